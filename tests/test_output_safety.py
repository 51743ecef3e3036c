"""Never lose a run, never write outside it: commands write only their own output directories."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from test_report import make_demo

from pivotune.cli import main
from pivotune.errors import PivotuneError
from pivotune.outputs import MARKER, claim_output_dir, mark_output

def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its bytes (None for a directory): equal snapshots, nothing changed."""
    return {str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes()) for p in sorted(root.rglob("*"))}


def refused(argv: list[str], capsys, *expected: str) -> str:
    """Run the CLI; it must exit 2 with one `error:` paragraph holding ``expected`` and no traceback."""
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err, err
    for text in expected:
        assert text in err, err
    return err


# ---------------------------------------------------------------- claiming an output directory


def test_claim_allows_new_empty_and_own_output_only(tmp_path):
    """New, empty and own-marked directories are claimed; another command's or foreign ones need force."""
    claim_output_dir(tmp_path / "new", "probe")
    (tmp_path / "empty").mkdir()
    claim_output_dir(tmp_path / "empty", "probe")
    (mark_output(tmp_path / "mine", "probe") / "probe.json").write_text("{}")
    claim_output_dir(tmp_path / "mine", "probe")
    (mark_output(tmp_path / "theirs", "report") / "report.md").write_text("x")
    with pytest.raises(PivotuneError, match=r"the output of `pivotune report` \(report.md\).*pass --force"):
        claim_output_dir(tmp_path / "theirs", "probe")
    claim_output_dir(tmp_path / "theirs", "probe", force=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(PivotuneError, match="is not a directory"):
        claim_output_dir(tmp_path / "file", "probe", force=True)


# ---------------------------------------------------------------- report


def test_report_refuses_to_replace_its_input_or_a_directory_holding_it(tmp_path, capsys):
    """report RUN --out RUN and --out PARENT are refused, even with --force, and nothing changes on disk."""
    demo = make_demo(tmp_path / "demo")
    (demo / "notes.txt").write_text("mine")
    run = demo / "prom-seed0"
    before = snapshot(tmp_path)
    for out in (run, demo):
        for force in ([], ["--force"]):
            refused(["report", str(run), "--out", str(out), *force], capsys, str(out), "--force")
            assert snapshot(tmp_path) == before
    refused(["report", str(demo), "--out", str(tmp_path)], capsys, "contains an input")
    assert snapshot(tmp_path) == before


def test_report_replaces_only_its_own_earlier_output_unless_forced(tmp_path, capsys):
    """An earlier report is replaced; a foreign non-empty directory only with --force."""
    demo = make_demo(tmp_path / "demo")
    out = tmp_path / "r"
    assert main(["report", str(demo), "--out", str(out)]) == 0
    (out / "report.md").write_text("stale")
    assert main(["report", str(demo), "--out", str(out)]) == 0       # its own: replaced
    assert (out / "report.md").read_text() != "stale" and (out / MARKER).is_file()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("years of work")
    refused(["report", str(demo), "--out", str(foreign)], capsys, "thesis.tex", "--force")
    assert (foreign / "thesis.tex").read_text() == "years of work"
    assert main(["report", str(demo), "--out", str(foreign), "--force"]) == 0
    assert (foreign / "report.html").is_file() and not (foreign / "thesis.tex").exists()


# ---------------------------------------------------------------- export


@pytest.fixture
def finished_run(tmp_path, tiny_model_dir):
    """A run directory with a plain model/ (what export reads)."""
    run = tmp_path / "run"
    shutil.copytree(tiny_model_dir, run / "model")
    (run / "config.yaml").write_text(yaml.safe_dump({"model": str(tiny_model_dir), "method": "english"}))
    (run / "run.json").write_text("{}")
    return run


def test_export_never_replaces_its_run_and_refuses_foreign_directories(finished_run, tmp_path, capsys):
    """export RUN RUN / RUN/model / PARENT refused even with --force; a foreign directory needs --force."""
    before = snapshot(tmp_path)
    for out in (finished_run, finished_run / "model", tmp_path):
        refused(["export", str(finished_run), str(out), "--force"], capsys, str(out), "never replaces")
        assert snapshot(tmp_path) == before
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    refused(["export", str(finished_run), str(foreign)], capsys, "keep.txt", "--force")
    assert (foreign / "keep.txt").read_text() == "x"


def test_export_replaces_its_own_earlier_export(finished_run, tmp_path):
    """A second export into the same directory replaces the first without --force."""
    out = tmp_path / "exported"
    assert main(["export", str(finished_run), str(out)]) == 0
    (out / "stale.txt").write_text("x")
    assert main(["export", str(finished_run), str(out)]) == 0
    assert (out / "config.json").is_file() and not (out / "stale.txt").exists()


# ---------------------------------------------------------------- probe and the other writers


def test_probe_refuses_a_foreign_directory(tmp_path, capsys):
    """probe --out into a non-empty directory it did not write is refused before any model loads."""
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "data.tsv").write_text("a\tb\n")
    before = snapshot(tmp_path)
    refused(["probe", str(tmp_path / "no-model"), "--pairs", f"th={foreign / 'data.tsv'}", "--out", str(foreign)],
            capsys, "data.tsv", "--force")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("argv", [
    ["compare", "{results}", "--out", "{out}"],
    ["interference", "{results}", "--out", "{out}"],
    ["eval", "some-org/some-model", "--tasks", "mgsm_native_cot_th", "--out", "{out}"],
    ["translate", "{results}", "--to", "th", "--engine", "toy", "--out-dir", "{out}"],
    ["demo", "--quick", "--out", "{out}"],
    ["sweep", "--quick", "--out", "{out}"],
])
def test_every_directory_writer_refuses_a_foreign_directory(argv, tmp_path, capsys):
    """compare, interference, eval, translate, demo and sweep refuse a non-empty directory they did not write."""
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"results": {}}))
    before = snapshot(tmp_path)
    refused([a.format(results=results, out=foreign) for a in argv], capsys, "keep.txt", "--force")
    assert snapshot(tmp_path) == before
