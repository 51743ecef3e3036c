"""The report's training losses per role and language: the figure on the page, the table's last values read from
run.json, a single run directory and a multi-stage run reported, a malformed series named by file and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_report import make_demo, parse

from pivotune.errors import PivotuneError
from pivotune.report import write_report
from pivotune.train.losses import joined_series

FIGURE = "figures/training_losses.png"


def _series(start: float, stage: bool = False) -> dict:
    return {"steps": [10, 20, 30], "loss": [start, start - 1, start - 2],
            "role": {"en": [start, start - 0.5, start - 0.75], "tgt": [start + 1, None, start - 1.25]},
            "lang": {"en": [start, start - 0.5, start - 0.75], "el": [start + 1, start, None]}}


def _with_losses(demo: Path) -> Path:
    for i, run in enumerate(sorted(p for p in demo.iterdir() if p.is_dir())):
        (run / "run.json").write_text(json.dumps({"method": run.name, "losses": _series(5.0 + i)}))
    return demo


def test_report_draws_the_losses_and_tables_the_last_values(tmp_path):
    """The figure is on the page; each run's row holds its last step and last logged value per role and language
    (an earlier one where the last step had none)."""
    out = tmp_path / "report"
    page = parse(write_report([_with_losses(make_demo(tmp_path / "demo"))], out))
    assert FIGURE in page.srcs and (out / FIGURE).read_bytes()[:4] == b"\x89PNG"
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "| run | last step | role en | role tgt | language en | language el |" in md
    # prom-seed0 is the first run in name order: start 5.0
    assert "| prom-seed0 | 30 | 4.250 | 3.750 | 4.250 | 5.000 |" in md


def test_a_run_directory_alone_reports_its_losses(tmp_path):
    """A run directory with nothing else to report than its training losses makes a report of them."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("method: xllama\n")
    stages = [("stage1", {**_series(4.0), "role": {"cs": [4.0, 3.0, 2.0]}, "lang": {"el": [4.0, 3.0, 2.0]}}, 30),
              ("stage2", {**_series(3.0), "role": {"en": [3.0, 2.5, 2.0]}, "lang": {"en": [3.0, 2.5, 2.0]}}, 30)]
    joined = joined_series(stages)
    assert joined["steps"] == [10, 20, 30, 40, 50, 60] and joined["stage"] == ["stage1"] * 3 + ["stage2"] * 3
    assert joined["role"] == {"cs": [4.0, 3.0, 2.0, None, None, None], "en": [None, None, None, 3.0, 2.5, 2.0]}
    (run / "run.json").write_text(json.dumps({"losses": joined}))
    md = (tmp_path / "r" / "report.md")
    write_report([run], tmp_path / "r")
    assert "| run | 60 | 2.000 | 2.000 | 2.000 | 2.000 |" in md.read_text(encoding="utf-8")


@pytest.mark.parametrize("losses", [[1, 2], {"steps": [1, 2], "role": {"en": [1.0]}, "lang": {}},
                                    {"steps": [1], "role": {}}])
def test_a_malformed_series_is_named(tmp_path, losses):
    """A run.json whose 'losses' is not the series `pivotune train` writes stops the report, naming file and field."""
    demo = make_demo(tmp_path / "demo")
    (demo / "prom-seed0" / "run.json").write_text(json.dumps({"losses": losses}))
    with pytest.raises(PivotuneError, match=r"prom-seed0/run.json: field 'losses'"):
        write_report([demo], tmp_path / "r")
    assert not (tmp_path / "r").exists()
