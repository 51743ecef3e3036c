"""A run killed while it wrote its final outputs (after its last checkpoint) is finished by --resume on every
training road, bitwise as the uninterrupted run and without training a step; a complete checkpoint exports as a
plain Hugging Face model directory. (The kill itself, a SIGKILL inside the final write, is in test_resume.py's
slow test; here the run directory is put in the state such a kill leaves.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_resume import DATA, _cfg

from pivotune.cli import main
from pivotune.errors import PivotuneError
from pivotune.export import export
from pivotune.train.resume import complete_checkpoints
from pivotune.train.run import train
from pivotune.train.trainer import PivotuneTrainer

pytestmark = pytest.mark.usefixtures("one_thread")
ONE_EPOCH = {"train.epochs": 1}   # 3 optimizer steps; checkpoints 2 and 3
LORA = {**ONE_EPOCH, "lora.enabled": "true", "lora.r": 4, "lora.dropout": 0.0}


@pytest.fixture(scope="module")
def reference(tiny_model_dir, tmp_path_factory):
    """``reference(method, lora)``: the run directory of an uninterrupted run, trained when first asked for."""
    runs = {}

    def get(method: str = "prom", lora: bool = False) -> Path:
        if (method, lora) not in runs:
            d = tmp_path_factory.mktemp(f"finish-ref-{method}-{lora}") / "run"
            train(_cfg(tiny_model_dir, d, method, **(LORA if lora else ONE_EPOCH)), DATA)
            runs[(method, lora)] = d
        return runs[(method, lora)]
    return get


def killed_in_final_write(ref: Path, run: Path) -> Path:
    """A copy of ``ref`` as a kill while it wrote ``RUN/model`` leaves it: the checkpoints, a half-written
    temporary of the model, and none of the final outputs (the model, pivot head, config.yaml and run.json)."""
    shutil.copytree(ref, run)
    for p in [run / "model", *run.glob("pivot_head.*"), run / "config.yaml", run / "run.json"]:
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    partial = run / ".model.k8t0oixs.tmp" / "payload"
    partial.mkdir(parents=True)
    weights = next((ref / "model").glob("*.safetensors"))
    (partial / weights.name).write_bytes(weights.read_bytes()[:1000])
    return run


def _files(d: Path, names=("model.safetensors", "adapter_model.safetensors", "pivot_head.safetensors")) -> dict:
    return {f"{name}:{k}": v for name in names if (d / name).is_file() for k, v in load_file(str(d / name)).items()}


def _assert_bitwise(want: dict, got: dict) -> None:
    assert want and want.keys() == got.keys()
    for k in want:
        assert torch.equal(want[k], got[k]), k


def _no_training(monkeypatch) -> list:
    steps: list = []
    compute_loss = PivotuneTrainer.compute_loss
    monkeypatch.setattr(PivotuneTrainer, "compute_loss", lambda self, *a, **k: steps.append(1) or compute_loss(
        self, *a, **k))
    return steps


@pytest.mark.parametrize("method, lora", [("prom", False), ("xllama", True)], ids=["prom", "xllama-lora"])
def test_resume_finishes_a_run_killed_in_its_final_write(reference, tiny_model_dir, tmp_path, monkeypatch,
                                                         method, lora):
    ref = reference(method, lora)
    run = killed_in_final_write(ref, tmp_path / "run")
    steps = _no_training(monkeypatch)
    trainer = train(_cfg(tiny_model_dir, run, method, **(LORA if lora else ONE_EPOCH)), DATA, resume=True)
    assert steps == [] and trainer.state.global_step == 3
    _assert_bitwise(_files(ref / "model") | _files(ref), _files(run / "model") | _files(run))   # model (+ head)
    assert sorted(p.name for p in (run / "model").iterdir()) == sorted(p.name for p in (ref / "model").iterdir())
    assert (run / "config.yaml").read_text() == (ref / "config.yaml").read_text().replace(str(ref), str(run))
    meta, want = json.loads((run / "run.json").read_text()), json.loads((ref / "run.json").read_text())
    assert meta["resumed_from"] == "checkpoint-3" and meta["steps"] == 3 and meta["mixture"] == want["mixture"]
    assert meta["finished_from"] == want["finished_from"]   # the same run, finished
    assert not list(run.glob(".model.*"))   # the half-written model was removed
    with pytest.raises(PivotuneError, match="Nothing to resume: checkpoint-3 is the last step of its run .*finished"):
        train(_cfg(tiny_model_dir, run, method, **(LORA if lora else ONE_EPOCH)), DATA, resume="auto")


def test_clo_run_killed_in_its_final_write_is_finished(tiny_model_dir, tmp_path, monkeypatch):
    from test_clo_resume import DATA as CLO_DATA
    from test_clo_resume import _cfg as clo_cfg

    train(clo_cfg(tiny_model_dir, tmp_path / "ref", **{"train.epochs": 1}), CLO_DATA)
    run = killed_in_final_write(tmp_path / "ref", tmp_path / "run")
    steps = _no_training(monkeypatch)
    train(clo_cfg(tiny_model_dir, run, **{"train.epochs": 1}), CLO_DATA, resume="auto")
    assert steps == []
    _assert_bitwise(_files(tmp_path / "ref" / "model"), _files(run / "model"))
    assert json.loads((run / "run.json").read_text())["resumed_from"] == "checkpoint-3"


def test_finishing_refuses_a_config_that_trains_longer(reference, tiny_model_dir, tmp_path):
    run = killed_in_final_write(reference(), tmp_path / "run")
    with pytest.raises(PivotuneError, match="last step of a 3-step run, but this config trains 6 steps"):
        train(_cfg(tiny_model_dir, run, "prom", **{"train.epochs": 2}), DATA, resume=True)
    assert not (run / "model").exists()


def test_a_checkpoint_exports_as_the_final_model_without_the_pivot_head(reference, tmp_path, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ref = reference("prom")
    run = killed_in_final_write(ref, tmp_path / "run")
    assert main(["export", str(run), str(tmp_path / "no")]) == 2   # the run dir: says what to do instead
    err = capsys.readouterr().err
    assert "not a finished pivotune run" in err and "--resume" in err and "checkpoint-3" in err
    assert "Traceback" not in err
    out = tmp_path / "exported"
    assert main(["export", str(run / "checkpoint-3"), str(out)]) == 0, capsys.readouterr().err
    assert not list(out.glob("pivot_head*")) and not (out / "optimizer.pt").exists()
    _assert_bitwise(_files(ref / "model"), _files(out))   # the LM only: the head is not in the export
    _, info = AutoModelForCausalLM.from_pretrained(out, output_loading_info=True)
    assert not info["unexpected_keys"] and not info["missing_keys"]
    assert AutoTokenizer.from_pretrained(out)("the cat")["input_ids"]


def test_a_lora_checkpoint_exports_merged_like_its_finished_run(reference, tmp_path):
    ref = reference("xllama", lora=True)
    assert (ref / "checkpoint-3" / "adapter_model.safetensors").is_file()
    export(ref, tmp_path / "from-run")
    export(ref / "checkpoint-3", tmp_path / "from-checkpoint")
    _assert_bitwise(_files(tmp_path / "from-run"), _files(tmp_path / "from-checkpoint"))
    assert not (tmp_path / "from-checkpoint" / "adapter_config.json").exists()


def test_an_incomplete_checkpoint_does_not_export(reference, tmp_path, capsys):
    ckpt = tmp_path / "checkpoint-3"
    shutil.copytree(reference() / "checkpoint-3", ckpt)
    (ckpt / "pivotune_resume.json").unlink()   # as if the save had been cut short
    assert main(["export", str(ckpt), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "not a finished pivotune run" in err and "Traceback" not in err
    assert [c.name for c in complete_checkpoints(reference())] == ["checkpoint-2", "checkpoint-3"]
