"""End to end with a tiny random-init NLLB-style model: fields, ids, protected spans, cache, resume, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pivotune.cli import main
from pivotune.errors import PivotuneError
from pivotune.translate.cache import TranslationCache
from pivotune.translate.pipeline import translate_file

ALPACA = [
    {"id": "a1", "instruction": "Write a short poem about the sea.", "input": "",
     "output": "The sea is blue. It has 3 waves at https://sea.example.org/x today.", "extra": 5},
    {"id": "a2", "instruction": "Explain the code.", "input": "```python\nprint(42)\n```",
     "output": "It prints `42` to the screen. Dr. Smith said so.\n- first point\n- second point"},
]
CHAT = [{"id": "c1", "messages": [{"role": "system", "content": ""},
                                  {"role": "user", "content": "Hello there, how are you?"},
                                  {"role": "assistant", "content": "I am fine, thank you."}]}]
PROTECTED = ["https://sea.example.org/x", "3", "```python\nprint(42)\n```", "`42`", "\n- "]


def _write(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_alpaca_file_same_ids_and_fields_protected_spans_survive_and_rerun_is_all_cached(tmp_path, tiny_translator):
    src = _write(tmp_path / "alpaca.jsonl", ALPACA)
    res = translate_file(src, tmp_path / "out", ["th", "el"], tiny_translator)
    assert set(res.outputs) == {"th", "el"} and res.translated > 0
    for lang in ("th", "el"):
        rows = _read(tmp_path / "out" / f"alpaca.{lang}.jsonl")
        assert [r["id"] for r in rows] == ["a1", "a2"]
        assert [sorted(r) for r in rows] == [sorted(r) for r in ALPACA]
        assert rows[0]["extra"] == 5 and rows[0]["input"] == ""
        text = json.dumps(rows)
        for span in PROTECTED:
            assert json.dumps(span)[1:-1] in text
        assert rows[1]["input"] == ALPACA[1]["input"]          # a field that is all code is kept whole
        assert rows[0]["instruction"] != ALPACA[0]["instruction"]
    calls = tiny_translator.calls
    again = translate_file(src, tmp_path / "out", ["th", "el"], tiny_translator)
    assert again.translated == 0 and again.from_cache == res.translated + res.from_cache
    assert tiny_translator.calls == calls                        # no model call at all


def test_chat_file_translates_every_message_and_keeps_roles(tmp_path, tiny_translator):
    src = _write(tmp_path / "chat.jsonl", CHAT)
    res = translate_file(src, tmp_path / "out", ["th"], tiny_translator)
    (row,) = _read(res.outputs["th"])
    assert row["id"] == "c1" and [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
    assert row["messages"][0]["content"] == ""
    assert all(m["content"] and m["content"] != o["content"] for m, o in zip(row["messages"][1:],
                                                                              CHAT[0]["messages"][1:]))


def test_language_codes_resolve_and_unknown_ones_suggest_the_nearest(tiny_translator):
    conv = tiny_translator.convention
    assert conv.name == "nllb" and conv.resolve("th") == conv.resolve("tha") == conv.resolve("tha_Thai") == "tha_Thai"
    with pytest.raises(PivotuneError, match="Nearest codes the model knows: .*tha_Thai"):
        tiny_translator.check_languages("en", "thai")


def test_unsupported_model_type_is_a_clear_error(tiny_model_dir):
    from pivotune.translate.seq2seq import HFSeq2SeqTranslator

    with pytest.raises(PivotuneError, match="model_type 'llama', which is not a supported translation model"):
        HFSeq2SeqTranslator(str(tiny_model_dir), device="cpu")


def test_bad_row_fails_before_the_model_loads_and_writes_nothing(tmp_path, capsys):
    src = _write(tmp_path / "bad.jsonl", [ALPACA[0], {"id": "x", "instruction": "Hi.", "output": 7}])
    rc = main(["translate", str(src), "--to", "th", "--model", str(tmp_path / "no-such-model"),
               "--out-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and "bad.jsonl, line 2, field 'output'" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


_WORKER = """
import sys, time
from pivotune.translate.pipeline import translate_file
from pivotune.translate.seq2seq import HFSeq2SeqTranslator
import torch
torch.set_num_threads(1)
model, src, out, pause_after = sys.argv[1:5]
t = HFSeq2SeqTranslator(model, device="cpu", batch_size=2, max_new_tokens=8)
real = t.translate
def translate(units, s, g):
    got = real(units, s, g)
    if t.calls == int(pause_after):
        print("PAUSED", flush=True)
        time.sleep(600)
    return got
t.translate = translate
translate_file(src, out, ["th"], t)
"""


def test_killed_run_resumes_without_retranslating_cached_items(tmp_path, tiny_nllb_dir, tiny_translator):
    rows = [{"id": f"r{i}", "instruction": f"Tell me about the {w} river.", "input": "",
             "output": f"The {w} river is long. People like the {w} water."}
            for i, w in enumerate(["red", "blue", "green", "black", "white", "brown"])]
    src = _write(tmp_path / "long.jsonl", rows)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    proc = subprocess.Popen([sys.executable, "-c", _WORKER, str(tiny_nllb_dir), str(src), str(out), "3"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "PAUSED"        # two batches committed, the third in flight
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (out / "long.th.jsonl").exists()                  # nothing half-written
    with TranslationCache(out / ".translate-cache.sqlite") as cache:
        cached_before = cache.count(tiny_translator.key)
    assert cached_before == 4

    calls = tiny_translator.calls
    res = translate_file(src, out, ["th"], tiny_translator)
    assert res.from_cache == cached_before                        # every cached sentence reused ...
    with TranslationCache(out / ".translate-cache.sqlite") as cache:
        assert cache.count(tiny_translator.key) == cached_before + res.translated   # ... none translated twice
    assert tiny_translator.calls - calls == -(-res.translated // tiny_translator.batch_size)
    final = _read(out / "long.th.jsonl")
    assert [r["id"] for r in final] == [r["id"] for r in rows]
    assert all(r["instruction"] and r["output"] for r in final)
    assert translate_file(src, out, ["th"], tiny_translator).translated == 0


def test_ctranslate2_engine_matches_transformers_greedy(tmp_path, tiny_nllb_dir, tiny_translator):
    pytest.importorskip("ctranslate2")
    from pivotune.translate.backends import Unit
    from pivotune.translate.seq2seq import CTranslate2Translator

    ct2 = CTranslate2Translator(str(tiny_nllb_dir), ct2_dir=tmp_path / "ct2", device="cpu", max_new_tokens=8)
    units = [Unit(t, "r", "output") for t in ("The sea is blue.", "Hello there, how are you?")]
    assert ct2.translate(units, "en", "th") == tiny_translator.translate(units, "en", "th")


def test_pickled_translation_model_is_refused(tiny_nllb_dir, tmp_path, capsys):
    """A translation model directory with only pickled weights is refused by the one safe-loading rule."""
    import shutil

    import torch

    model = tmp_path / "pickled-nllb"
    shutil.copytree(tiny_nllb_dir, model)
    for f in model.glob("*.safetensors"):
        f.unlink()
    torch.save({}, model / "pytorch_model.bin")
    src = _write(tmp_path / "in.jsonl", ALPACA[:1])
    rc = main(["translate", str(src), "--to", "th", "--model", str(model), "--out-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and "only pickled weights (pytorch_model.bin)" in err and "Traceback" not in err
