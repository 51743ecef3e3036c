"""`pivotune interference` on tiny runs: logged curves, measured bars, base models under --config, bad input."""

from __future__ import annotations

import json

import pytest
from test_cli import _write_config

from pivotune.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")
LOGGED = {"every": 1, "batches": 2, "batch_size": 2, "layers": "1", "pairs": [["en", "tgt:el"], ["tgt", "mt"]]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir):
    """An xllama LoRA run that logged interference and a PROM run that did not."""
    d = tmp_path_factory.mktemp("interference-runs")
    (d / "a").mkdir()
    (d / "b").mkdir()
    a = _write_config(d / "a", tiny_model_dir, interference=LOGGED, lora={"enabled": True, "r": 4},
                      max_seq_len=256)
    b = _write_config(d / "b", tiny_model_dir, method="prom",
                      prom={"pivot_layer": 1, "lambda_per_language": {"el": 0.5}}, max_seq_len=256)
    assert main(["train", a]) == 0 and main(["train", b]) == 0
    return d / "a" / "run", d / "b" / "run"


def _png(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_logged_curve_and_measured_bar(runs, tmp_path, capsys):
    logged_run, prom_run = runs
    assert main(["interference", str(logged_run), str(prom_run), "--pairs", "en,tgt:el", "tgt,mt",
                 "--layers", "1", "--out", str(tmp_path / "mixed")]) == 0
    assert "wrote" in capsys.readouterr().out
    summary = json.loads((tmp_path / "mixed" / "interference.json").read_text())
    _png(tmp_path / "mixed" / "interference.png")
    assert summary["runs"]["xllama"]["source"] == "log" and summary["runs"]["prom"]["source"] == "measured"
    by = {(s["label"], s["pair"]): s for s in summary["series"]}
    assert by[("xllama", "en~tgt:el")]["steps"] == [0, 1, 2, 3]
    assert -1 <= by[("prom", "tgt~mt")]["mean"][0] <= 1

    # the logged value at the last step is the final model's: measuring the run again gives it back
    assert main(["interference", str(logged_run), "--pairs", "en,tgt:el", "--layers", "1", "--batches", "2",
                 "--batch-size", "2", "--recompute", "--out", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "interference.json").read_text())["series"][0]
    assert again["mean"][0] == pytest.approx(by[("xllama", "en~tgt:el")]["mean"][-1], abs=1e-6)


def test_base_model_under_each_method(runs, tmp_path):
    cfg = str(runs[0].parent / "run.yaml")
    assert main(["interference", "--config", cfg, "--methods", "xllama", "prom-noreg", "--layers", "all",
                 "--profile", "--seed", "1", "--out", str(tmp_path / "base")]) == 0
    summary = json.loads((tmp_path / "base" / "interference.json").read_text())
    _png(tmp_path / "base" / "interference.png")
    assert set(summary["runs"]) == {"xllama", "prom-noreg"}
    prom = summary["runs"]["prom-noreg"]
    assert prom["blocks"] == [1, 2] and prom["pivot_layer"] == 1   # round(0.75·2), kept below the top block
    profiles = {m: r["pairs"]["en~tgt"]["profile"] for m, r in summary["runs"].items()}
    assert all(-1 <= e["mean"] <= 1 for e in profiles["xllama"].values())
    # PROM's English rows stop at the pivot block 1: block 2 has no English gradient, so no cosine
    assert -1 <= profiles["prom-noreg"]["1"]["mean"] <= 1 and profiles["prom-noreg"]["2"]["undefined"] == 4


def test_bad_input_is_exit_2(tmp_path, runs, capsys):
    assert main(["interference", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "not a pivotune run directory" in capsys.readouterr().err
    assert main(["interference", str(runs[1]), "--pairs", "en", "--out", str(tmp_path / "o")]) == 2
    assert "expected A,B" in capsys.readouterr().err
    assert main(["interference", str(runs[1]), "--pairs", "en,cs", "--out", str(tmp_path / "o")]) == 2
    assert "'cs' has no samples" in capsys.readouterr().err
    assert not (tmp_path / "o" / "interference.json").exists()
