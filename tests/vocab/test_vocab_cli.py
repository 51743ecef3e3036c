"""``pivotune vocab extend``: a plain Hugging Face directory out, clear errors and nothing written on bad input."""

from __future__ import annotations

import json

import pytest
import torch
from vocab_helpers import tiny_model

from pivotune.cli import main


@pytest.fixture(scope="module")
def base_dirs(tmp_path_factory, base_tokenizers):
    """Saved tiny base models: Llama-2-style tokenizer (LlamaTokenizer) and Llama-3-style (byte-level)."""
    dirs = {}
    for kind in ("sentencepiece", "byte_level"):
        d = tmp_path_factory.mktemp(f"base-{kind}")
        tiny_model(base_tokenizers[kind]).save_pretrained(d)
        base_tokenizers[kind].save_pretrained(d)
        dirs[kind] = d
    return dirs


@pytest.mark.parametrize("kind", ["sentencepiece", "byte_level"])
def test_extend_writes_a_model_directory_that_loads_without_pivotune(kind, base_dirs, world, held_out, tmp_path,
                                                                     capsys, one_thread):
    """Instruction and parallel files in, a directory AutoModelForCausalLM / AutoTokenizer load out: old token
    ids and their logits unchanged, new rows present, the record written, the numbers printed."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "out"
    rc = main(["vocab", "extend", str(base_dirs[kind]), "--corpus", str(world / "instructions" / "th.jsonl"),
               "--parallel", str(world / "parallel" / "en-th.jsonl"), "--lang", "th", "--n-new", "120",
               "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "added 120 Thai-script tokens" in printed and "fewer" in printed
    old_tok = AutoTokenizer.from_pretrained(base_dirs[kind])
    new_tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(base_dirs[kind])
    assert type(new_tok) is type(old_tok) and len(new_tok) == len(old_tok) + 120
    assert model.get_input_embeddings().weight.shape[0] == len(new_tok)
    assert not (out / "tokenizer.model").exists()
    english = held_out["en"][:3]
    assert new_tok(english)["input_ids"] == old_tok(english)["input_ids"]
    ids = torch.tensor([new_tok(english[0])["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits[..., :len(old_tok)], base(ids).logits)
    record = json.loads((out / "vocab_extension.json").read_text())
    assert record["new_tokens"] == 120 and record["scripts"] == ["Thai"] and record["embedding_rows"] == len(new_tok)
    assert record["tokens_per_word_on_corpus"]["after"] < record["tokens_per_word_on_corpus"]["before"]


def test_plain_text_corpus_and_tokenizer_only(base_dirs, corpus, tmp_path):
    """A .txt corpus (one text a line) and --tokenizer-only: the tokenizer and record, no model."""
    txt = tmp_path / "th.txt"
    txt.write_text("\n".join(corpus["th"]) + "\n", encoding="utf-8")
    out = tmp_path / "tok"
    assert main(["vocab", "extend", str(base_dirs["byte_level"]), "--corpus", str(txt), "--n-new", "50",
                 "--tokenizer-only", "--out", str(out)]) == 0
    assert (out / "tokenizer.json").is_file() and not (out / "model.safetensors").exists()


@pytest.mark.parametrize("args, message", [
    (["--n-new", "100000"], "too small to learn 100000 new tokens"),
    (["--n-new", "10", "--lang", "thai"], "'thai' is not a language code"),
    (["--n-new", "10", "--script", "Latn"], "English is written in Latin script"),
    (["--n-new", "0"], "must be a positive integer"),
])
def test_bad_input_is_an_error_and_nothing_is_written(args, message, base_dirs, world, tmp_path, capsys):
    """Too small a corpus, an unknown language, English's script, no tokens: exit 2, the reason, no OUT."""
    out = tmp_path / "out"
    rc = main(["vocab", "extend", str(base_dirs["byte_level"]), "--corpus", str(world / "instructions" / "th.jsonl"),
               "--out", str(out), *args])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and message in err, err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_an_existing_output_directory_is_kept_without_force(base_dirs, world, tmp_path, capsys):
    """OUT holding files: refused unless --force."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    rc = main(["vocab", "extend", str(base_dirs["byte_level"]), "--corpus", str(world / "instructions" / "th.jsonl"),
               "--n-new", "10", "--out", str(out)])
    assert rc == 2 and "pass --force" in capsys.readouterr().err and (out / "keep.txt").exists()
