"""A run config's ``vocab:`` block: the run extends the tokenizer, resizes the model, trains the new rows with their
own learning rate (old rows frozen where configured, or under LoRA), saves the extended tokenizer with its model,
and refuses bad input with a clear error naming the key, before anything is written."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_llama   # imported now: tests/vocab has a conftest of its own
from road_cases import ENGLISH, MT, TARGET, parts, raw_config

from pivotune.config import load_config
from pivotune.data.records import Sample
from pivotune.errors import ConfigError, PivotuneError
from pivotune.methods import METHODS
from pivotune.train.run import train

pytestmark = pytest.mark.usefixtures("one_thread")

#: the road cases' target language written in Greek letters, a script the tiny tokenizer spells in bytes
_GREEK = dict(zip("abcdefghijklmnopqrstuvwxyz", "αβψδεφγηιξκλμνοπρστθωϝςχυζ"))
N_NEW = 12
EMBEDDING_LR = 5e-2


def greek(text: str) -> str:
    return "".join(_GREEK.get(c, c) for c in text)


def _in_greek(s: Sample) -> Sample:
    if s.role == "mt":   # an English instruction and input, the target-language output
        return Sample(**{**s.__dict__, "output": greek(s.output)})
    return Sample(**{**s.__dict__, "instruction": greek(s.instruction), "input": greek(s.input),
                     "output": greek(s.output)})


SAMPLES = ENGLISH + [_in_greek(s) for s in TARGET + MT]


def vocab_config(method: str, model_dir, out, files=None, *, vocab=None, save_steps=None, **top):
    """The road case's config for 3 steps, with a vocab block adding N_NEW Greek-script tokens."""
    raw = raw_config(method, model_dir, out, files or {}, max_steps=3, save_steps=save_steps)
    raw["vocab"] = {"n_new": N_NEW, "scripts": ["Grek"], **(vocab or {})}
    return load_config(base={**raw, **top})


def _rows(model):
    return model.get_input_embeddings().weight.detach(), model.get_output_embeddings().weight.detach()


def test_config_refuses_a_bad_vocab_block(tiny_model_dir, tmp_path):
    """Latin script, a vocab block with no target text to learn from, and a misspelt key: each a ConfigError
    naming the key."""
    with pytest.raises(ConfigError, match=r"field vocab\.scripts.*Latin script"):
        vocab_config("xllama", tiny_model_dir, tmp_path / "run", vocab={"scripts": ["Latn"]})
    raw = raw_config("xllama", tiny_model_dir, tmp_path / "run", {})
    english_only = {**raw, "data": [{"path": "en.jsonl", "role": "en", "lang": "en"}], "vocab": {"n_new": 5}}
    with pytest.raises(ConfigError, match=r"field vocab\.corpus.*tgt/mt data"):
        load_config(base=english_only)
    with pytest.raises(ConfigError, match=r"Did you mean 'vocab\.embedding_lr'"):
        load_config(base={**raw, "vocab": {"n_new": 5, "embeding_lr": 1e-3}})


def test_a_latin_script_language_is_refused_naming_the_keys(tiny_model_dir, tmp_path):
    """The extension's languages default to the run's; one written in Latin script (English's own) is refused,
    naming vocab.languages and vocab.scripts."""
    from pivotune.vocab.run import run_scripts

    raw = raw_config("xllama", tiny_model_dir, tmp_path / "run", {})
    cfg = load_config(base={**raw, "languages": ["th", "vi"], "vocab": {"n_new": 5, "corpus": ["th.txt"]}})
    with pytest.raises(PivotuneError, match=r"'vi' is written in Latin script.*vocab\.languages.*vocab\.scripts"):
        run_scripts(cfg)
    assert run_scripts(cfg.model_copy(update={"vocab": cfg.vocab.model_copy(update={"languages": ["th"]})})) == (
        "Thai",)


def test_full_fine_tuning_run_trains_new_rows_and_saves_the_extended_model(tiny_model_dir, tmp_path):
    """xllama with vocab.freeze_old_rows: the saved model has the extended tokenizer and as many rows, every old
    row of both matrices is the base model's, the new rows moved from their mean init, and run.json and
    RUN/model/vocab_extension.json record the extension."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "run"
    cfg = vocab_config("xllama", tiny_model_dir, out, vocab={"freeze_old_rows": True, "embedding_lr": EMBEDDING_LR})
    trainer = train(cfg, SAMPLES, save_checkpoints=False)
    base_tok, base = AutoTokenizer.from_pretrained(tiny_model_dir), AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tok, model = AutoTokenizer.from_pretrained(out / "model"), AutoModelForCausalLM.from_pretrained(out / "model")
    n_old = len(base_tok)
    assert len(tok) == n_old + N_NEW == model.get_input_embeddings().weight.shape[0]
    for old, new in zip(_rows(base), _rows(model)):
        assert torch.equal(new[:n_old], old)
    groups = trainer.optimizer.param_groups
    assert groups[-1]["lr"] == pytest.approx(EMBEDDING_LR) and groups[-1]["weight_decay"] == 0.0
    english = [s.output for s in ENGLISH]
    assert tok(english)["input_ids"] == base_tok(english)["input_ids"]
    target = greek(" ".join(s.output for s in TARGET))
    assert len(tok(target)["input_ids"]) < len(base_tok(target)["input_ids"])
    record = json.loads((out / "model" / "vocab_extension.json").read_text())
    assert record["new_tokens"] == N_NEW and record["scripts"] == ["Grek"]
    assert json.loads((out / "run.json").read_text())["vocab"] == record
    # the new rows moved from their initial values (the mean of their pieces' rows in the base model)
    from pivotune.vocab.init import plan_new_rows

    rows = plan_new_rows(base_tok, tok)
    used = sorted(set(tok(target)["input_ids"]) & set(rows.ids))
    init = torch.stack([_rows(base)[0][list(p)].mean(0) for i, p in zip(rows.ids, rows.sources) if i in used])
    assert (_rows(model)[0][used] - init).abs().max() > 1e-3


def test_lora_run_trains_new_rows_as_trainable_tokens_and_exports_a_plain_model(tiny_model_dir, tmp_path):
    """Under LoRA the new rows train through peft's trainable tokens (saved with the adapter); the export is a plain
    directory with the resized embeddings, the old rows as they were and the extended tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pivotune.export import export

    out = tmp_path / "run"
    cfg = vocab_config("bactrian", tiny_model_dir, out, vocab={"embedding_lr": EMBEDDING_LR},
                       lora={"enabled": True, "r": 4})
    trainer = train(cfg, SAMPLES, save_checkpoints=False)
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert any("trainable_tokens_delta" in n for n in trainable)
    assert all("lora_" in n or "trainable_tokens_delta" in n for n in trainable), trainable
    adapter = json.loads((out / "model" / "adapter_config.json").read_text())
    assert adapter["trainable_token_indices"]
    export(out, tmp_path / "export")
    base_tok, base = AutoTokenizer.from_pretrained(tiny_model_dir), AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tmp_path / "export")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "export")
    n_old = len(base_tok)
    assert len(tok) == n_old + N_NEW == model.get_input_embeddings().weight.shape[0]
    for old, new in zip(_rows(base), _rows(model)):
        assert torch.equal(new[:n_old], old)
        assert new[n_old:].abs().sum() > 0


def test_bad_vocab_input_stops_the_run_with_nothing_written(tiny_model_dir, tmp_path):
    """A corpus too small for n_new names vocab.n_new and how many it yields; the run directory is not left
    behind."""
    out = tmp_path / "run"
    with pytest.raises(PivotuneError, match=r"too small to learn 5000 new tokens.*vocab\.n_new \d+"):
        train(vocab_config("xllama", tiny_model_dir, out, vocab={"n_new": 5000}), SAMPLES, save_checkpoints=False)
    assert not out.exists()


def _check_cli(tmp_path, model_dir, n_new: int, monkeypatch, capsys) -> tuple[int, str]:
    """``pivotune train CONFIG --check`` on the Greek road-case data written to files (no model may load)."""
    import yaml

    import pivotune.models.loading as loading
    from pivotune.cli import main

    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("--check loaded a model"))
    data = []
    for role in ("en", "tgt"):
        rows = [{"instruction": s.instruction, "input": s.input, "output": s.output} for s in SAMPLES if s.role == role]
        path = tmp_path / f"{role}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        data.append({"path": str(path), "role": role, "lang": "en" if role == "en" else "el"})
    cfg = {"model": str(model_dir), "method": "xllama", "languages": ["el"], "output_dir": str(tmp_path / "run"),
           "data": data, "vocab": {"n_new": n_new}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    try:
        rc = main(["train", str(path), "--check"])
    except SystemExit as e:
        rc = e.code
    captured = capsys.readouterr()
    return rc, captured.out + captured.err


def test_check_tries_the_extension_without_loading_the_model(tiny_model_dir, tmp_path, monkeypatch, capsys):
    """--check learns the tokens (el -> Greek script) and notes them; a corpus too small is a problem naming
    vocab.n_new, exit 2, and nothing is written."""
    rc, out = _check_cli(tmp_path, tiny_model_dir, N_NEW, monkeypatch, capsys)
    assert rc == 0 and f"vocab: {N_NEW} Grek-script tokens learned" in out
    rc, out = _check_cli(tmp_path, tiny_model_dir, 5000, monkeypatch, capsys)
    assert rc == 2 and "vocab: The corpus is too small to learn 5000 new tokens" in out and "vocab.n_new" in out
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def files(tmp_path_factory, tokenizer):
    return parts(tmp_path_factory.mktemp("vocab-road-parts"), tokenizer)


def _saved_lm(method: str, out):
    """RUN/model's LM and tokenizer: a plain causal LM, a LoRA adapter merged into its (resized) base, or the LM
    inside LinguaLIFT's bridge."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pivotune.models.loading import load_lora_model

    if (out / "model" / "adapter_config.json").is_file():
        return load_lora_model(out / "model"), AutoTokenizer.from_pretrained(out / "model")
    if METHODS[method].causal_lm:
        return AutoModelForCausalLM.from_pretrained(out / "model"), AutoTokenizer.from_pretrained(out / "model")
    from pivotune.models.bridge import LinguaLiftModel

    bridge = LinguaLiftModel.from_pretrained(out / "model")
    return bridge.lm, bridge.lm_tokenizer


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_trains_the_extension_saves_and_reloads(method, lora, tiny_model_dir, files, tmp_path,
                                                             monkeypatch):
    """Every registered method, full fine-tuning and LoRA, with vocab: the method's road sees only the extended
    tokenizer and the resized model (its data encoded with it; PROM's regulation and lens-local's lens, CLO's
    reference pass read them), the run trains, RUN/model reloads with the extended tokenizer and as many
    embedding rows, the new output rows moved from their mean init, and the old rows are the base model's wherever
    the method freezes the embeddings; PROM's pivot head has the new rows too."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pivotune.vocab.init import plan_new_rows

    out = tmp_path / "run"
    cfg = vocab_config(method, tiny_model_dir, out, files, vocab={"embedding_lr": EMBEDDING_LR},
                       lora={"enabled": lora, "r": 4})
    road = type(METHODS[method].road(cfg))
    seen = []
    for hook in ("units", "prepare_base"):
        real = getattr(road, hook)
        monkeypatch.setattr(road, hook, lambda self, *a, _real=real, _hook=hook, **k: seen.append((_hook, a)) or
                            _real(self, *a, **k))
    trainer = train(cfg, SAMPLES, save_checkpoints=False)
    n_rows = len(AutoTokenizer.from_pretrained(tiny_model_dir)) + N_NEW
    assert {hook for hook, _ in seen} == {"units", "prepare_base"}
    for hook, args in seen:
        tokenizer = args[2] if hook == "units" else args[1]
        assert len(tokenizer) == n_rows
        if hook == "prepare_base":
            assert args[0].get_input_embeddings().weight.shape[0] == n_rows
    assert trainer.optimizer.param_groups[-1]["lr"] == pytest.approx(EMBEDDING_LR)
    model, tok = _saved_lm(method, out)
    base_tok, base = AutoTokenizer.from_pretrained(tiny_model_dir), AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    n_old = len(base_tok)
    assert len(tok) == n_old + N_NEW == model.get_input_embeddings().weight.shape[0]
    rows = plan_new_rows(base_tok, tok)
    base_out = _rows(base)[1]
    init = torch.stack([base_out[list(p)].mean(0) for p in rows.sources])
    assert (_rows(model)[1][list(rows.ids)] - init).abs().max() > 1e-4, "the new output rows trained"
    embeddings_frozen = lora or method in ("clo", "lens-local")
    if embeddings_frozen:
        for old, new in zip(_rows(base), _rows(model)):
            assert torch.equal(new[:n_old], old)
    if method.startswith("prom"):
        from safetensors.torch import load_file

        head = load_file(str(out / "pivot_head.safetensors"))["proj.weight"]
        assert head.shape[0] == n_old + N_NEW


@pytest.mark.parametrize(("method", "lora"), [("xllama", False), ("prom", True)], ids=["xllama-full", "prom-lora"])
def test_an_interrupted_vocab_run_resumes_to_the_uninterrupted_weights(method, lora, tiny_model_dir, files, tmp_path,
                                                                       monkeypatch):
    """Crashed in step 3 and resumed from checkpoint-2: the extension is learned again, identically, and the run
    ends with the weights of a run never stopped (new rows' optimizer group included), bitwise."""
    from test_roads import _weights, train_until_crash

    def cfg(out):
        return vocab_config(method, tiny_model_dir, out, files, save_steps=1, lora={"enabled": lora, "r": 4},
                            vocab={"embedding_lr": EMBEDDING_LR, "freeze_old_rows": True})

    train(cfg(tmp_path / "ref"), SAMPLES)
    run = tmp_path / "run"
    train_until_crash(cfg(run), SAMPLES, run, 3, monkeypatch)
    train(cfg(run), SAMPLES, resume="auto")
    want, got = _weights(tmp_path / "ref"), _weights(run)
    assert want and want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want), [k for k in want if not torch.equal(want[k], got[k])]
    assert json.loads((run / "run.json").read_text())["resumed_from"] == "checkpoint-2"


def test_a_matrix_the_method_trains_keeps_its_old_rows_training(tiny_model_dir, files, tmp_path):
    """lens-local with lens_local.head trains the unembedding but not the input embedding: with vocab, the old
    output rows still train, the old input rows stay frozen and the new rows of both train."""
    from transformers import AutoModelForCausalLM

    out = tmp_path / "run"
    cfg = vocab_config("lens-local", tiny_model_dir, out, files, lens_local={"split_layer": 1, "head": True})
    train(cfg, SAMPLES, save_checkpoints=False)
    (emb0, out0), (emb, out_) = _rows(AutoModelForCausalLM.from_pretrained(tiny_model_dir)), _rows(
        AutoModelForCausalLM.from_pretrained(out / "model"))
    n_old = emb0.shape[0]
    assert torch.equal(emb[:n_old], emb0) and not torch.equal(out_[:n_old], out0)


def test_prom_pivot_head_starts_with_the_new_rows_of_the_resized_unembedding(base_model_and_extension):
    """PROM's pivot head is copied from W_U after the resize, so each new row starts as the mean of its old pieces'
    output rows, as the unembedding's own new rows do."""
    from pivotune.methods.prom.objective import PromObjective
    from pivotune.methods.prom.settings import PromSettings

    model, old_out, rows = base_model_and_extension
    pivoted = PromObjective(PromSettings(), 0.5).prepare_model(model)
    head = pivoted.pivot_head.proj.weight.detach()
    assert head.shape[0] == rows.num_rows
    for new_id, pieces in zip(rows.ids, rows.sources):
        torch.testing.assert_close(head[new_id], old_out[list(pieces)].mean(0))
    torch.testing.assert_close(head[:old_out.shape[0]], old_out)


@pytest.fixture()
def base_model_and_extension(tokenizer):
    """A tiny Llama resized for the Greek extension: (model, its output rows before, the new rows)."""
    from pivotune.vocab.corpus import texts_of
    from pivotune.vocab.extend import extend_tokenizer
    from pivotune.vocab.init import resize_and_init

    model = tiny_llama(tokenizer)
    old_out = model.get_output_embeddings().weight.detach().clone()
    ext = extend_tokenizer(tokenizer, texts_of(s for s in SAMPLES if s.role != "en"), N_NEW, scripts=["Grek"])
    return model, old_out, resize_and_init(model, tokenizer, ext.tokenizer)


def test_the_lens_token_sets_of_an_extended_tokenizer_hold_the_new_tokens(tokenizer):
    """The logit lens (PROM's regulation, lens-local, `pivotune probe` of a run) builds each target word's token set
    from the tokenizer it is given: under the extended one, the target words' sets hold the new tokens that begin
    them (none did before: the base spells Greek in bytes); the English sets are unchanged."""
    from pivotune.analysis.probe_items import build_items
    from pivotune.vocab.corpus import texts_of
    from pivotune.vocab.extend import extend_tokenizer

    ext = extend_tokenizer(tokenizer, texts_of(s for s in SAMPLES if s.role != "en"), N_NEW, scripts=["Grek"])
    pairs = [(w, greek(w)) for w in ("the", "dog", "item", "sees")]
    (before, _), (after, _) = build_items(pairs, tokenizer), build_items(pairs, ext.tokenizer)
    new_ids = set(ext.new_ids)
    assert not before and len(after) == len(pairs)   # byte tokens are never in a set: no Greek item before
    assert all(set(it.tgt_ids) & new_ids for it in after)
    assert all(it.en_ids == build_items([(it.english, "x")], tokenizer)[0][0].en_ids for it in after)
