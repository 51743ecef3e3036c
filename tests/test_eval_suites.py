"""The presets that follow the run's languages resolve to the installed harness's own task names, a
lacking language is one line; and the generation backend option (vLLM's wiring, tested without vLLM)."""

from __future__ import annotations

import json
import logging
import shutil
import sys
import types

import pytest

from pivotune.cli import main
from pivotune.errors import PivotuneError
from pivotune.eval import backends, registry, suites

EXPECTED = {
    "global": {
        "th": ["belebele_tha_Thai", "xcopa_th", "xnli_th", "mgsm_native_cot_th"],
        "sw": ["belebele_swh_Latn", "global_mmlu_full_sw", "xcopa_sw", "xnli_sw", "xstorycloze_sw",
               "mgsm_native_cot_sw"],
        "el": ["belebele_ell_Grek", "global_mmlu_full_el", "xnli_el"],
    },
    "english-retention": {lang: ["mmlu", "arc_challenge", "hellaswag", "gsm8k"] for lang in ("th", "sw", "el")},
    "flores": {lang: [f"pivotune_flores_en-{lang}", f"pivotune_flores_{lang}-en"] for lang in ("th", "sw", "el")},
}


def test_every_preset_resolves_to_real_task_names():
    """For th, sw and el every resolved harness name is a task or group of the installed harness (its
    TaskManager over the suite folders, each entry's file read back), and the lists are as expected."""
    from lm_eval.tasks import TaskManager
    from lm_eval.tasks._index import Kind
    from lm_eval.tasks._yaml_loader import load_yaml

    folders = sorted({s.folder for group in suites.LANGUAGE_PRESETS.values() for s in group if s.folder})
    tm = TaskManager(include_path=[str(registry.harness_dir() / f) for f in folders], include_defaults=False)
    for preset, by_lang in EXPECTED.items():
        assert set(registry.PRESETS) >= {preset}
        for lang, expected in by_lang.items():
            names = suites.resolve(preset, [lang]).names
            print(f"{preset} {lang}: {' '.join(names)}")
            assert names == expected, (preset, lang)
            for name in names:
                if name.startswith("pivotune_"):
                    continue
                entry = tm.task_index[name]
                assert entry.kind in (Kind.TASK, Kind.GROUP), name
                cfg = load_yaml(entry.yaml_path, resolve_func=False)
                assert name in (cfg.get("task"), cfg.get("group")), name
    both = suites.resolve("global", ["th", "sw"]).names
    assert both[:2] == ["belebele_tha_Thai", "belebele_swh_Latn"] and len(both) == 10


def test_lacking_languages_are_one_line(caplog):
    """What the harness lacks for the run's languages is logged as one line; no language at all is an error."""
    caplog.set_level(logging.WARNING)
    names = registry.expand(["pivotune_xquad_th"], "global", ["th", "el"])
    assert names[-1] == "pivotune_xquad_th" and "xnli_el" in names
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["preset global: the installed harness has no Global-MMLU for th; XCOPA for el; "
                     "XStoryCloze for th, el; MGSM for el"]
    with pytest.raises(PivotuneError, match="preset global lists tasks per target language.*--languages"):
        registry.expand(None, "global")
    with pytest.raises(PivotuneError, match="preset global has no task for xx"):
        suites.resolve("global", ["xx"], known=set())
    assert suites.resolve("english-retention", known={"mmlu"}).lacking == {"ARC-Challenge": [], "HellaSwag": [],
                                                                           "GSM8K": []}


def test_run_languages_come_from_the_run_config(tmp_path, tiny_model_dir, capsys):
    """A run's config names its languages; without a run or --languages the preset says what to do."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("method: prom\nlanguages: [th, el]\n")
    assert suites.run_languages(run) == ["th", "el"] and suites.run_languages(None) == []
    assert main(["eval", str(tiny_model_dir), "--preset", "global", "--out", str(tmp_path / "o")]) == 2
    assert "--languages" in capsys.readouterr().err
    assert main(["eval", str(tiny_model_dir), "--preset", "flores", "--languages", "thai",
                 "--out", str(tmp_path / "o")]) == 2
    assert "--languages: 'thai' is not a language code" in capsys.readouterr().err


# -- backends ------------------------------------------------------------------------------------------

def _flores_dir(root):
    (root / "devtest").mkdir(parents=True)
    (root / "devtest" / "eng_Latn.devtest").write_text("A cat sleeps.\nTwo dogs run.\n", encoding="utf-8")
    (root / "devtest" / "tha_Thai.devtest").write_text("แมวนอน\nสุนัขสองตัววิ่ง\n", encoding="utf-8")
    return root


def test_vllm_missing_is_one_clear_line(tmp_path, tiny_model_dir, capsys, monkeypatch):
    """Without vLLM, --backend vllm stops before loading anything, with one line saying how to install it."""
    monkeypatch.setattr(backends, "vllm_installed", lambda: False)
    assert main(["eval", str(tiny_model_dir), "--tasks", "pivotune_flores_en-th", "--flores-dir",
                 str(_flores_dir(tmp_path / "f")), "--backend", "vllm", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {backends.VLLM_INSTALL}" and "pip install vllm" in err and "\n" not in err
    assert not (tmp_path / "o").exists()
    assert backends.vllm_model_args("m", dtype="bfloat16", max_length=2048) == {
        "pretrained": "m", "dtype": "bfloat16", "batch_size": "auto", "max_model_len": 2048}
    monkeypatch.setattr(backends, "vllm_installed", lambda: True)
    with pytest.raises(PivotuneError, match="in-memory model runs on --backend hf"):
        backends.vllm_lm(object())


def test_vllm_backend_gets_the_runs_model_directory(tmp_path, tiny_model_dir, monkeypatch):
    """With vLLM present, the harness's VLLM model is built from the run's model/ directory and its
    generations are scored like any other backend's (a stand-in VLLM here: no GPU, no vLLM)."""
    from lm_eval.api.model import LM

    class FakeVLLM(LM):
        made: list = []

        def __init__(self, **kwargs):
            super().__init__()
            FakeVLLM.made.append(kwargs)

        def generate_until(self, requests, disable_tqdm=False):
            return ["แมวนอน" for _ in requests]

        def loglikelihood(self, requests, disable_tqdm=False):
            raise NotImplementedError

        def loglikelihood_rolling(self, requests, disable_tqdm=False):
            raise NotImplementedError

    monkeypatch.setattr(backends, "vllm_installed", lambda: True)
    monkeypatch.setitem(sys.modules, "lm_eval.models.vllm_causallms", types.SimpleNamespace(VLLM=FakeVLLM))
    run = tmp_path / "run"
    shutil.copytree(tiny_model_dir, run / "model")
    (run / "config.yaml").write_text("method: prom\nlanguages: [th]\n")
    assert main(["eval", str(run), "--preset", "flores", "--flores-dir", str(_flores_dir(tmp_path / "f")),
                 "--backend", "vllm", "--dtype", "bfloat16"]) == 0
    assert FakeVLLM.made == [{"pretrained": str(run / "model"), "dtype": "bfloat16", "batch_size": "auto"}]
    res = json.loads((run / "eval" / "results.json").read_text())
    assert res["pivotune"]["backend"] == "vllm"
    en_th = res["results"]["pivotune_flores_en-th"]
    assert en_th["chrf++,none"] > en_th["bleu,none"] >= 0 and en_th["line_pass_rate,none"] == 1.0
    assert res["results"]["pivotune_flores_th-en"]["line_pass_rate,none"] == 0.0   # Thai when English is asked
