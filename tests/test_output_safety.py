"""Never lose a run, never write outside it: commands write only their own output directories, a training run
never replaces another run unasked, one run at a time holds a run directory, and a failed run leaves nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_cli import _write_config
from test_report import make_demo

from pivotune.cli import main
from pivotune.errors import PivotuneError
from pivotune.outputs import MARKER, claim_output_dir, mark_output
from pivotune.train.rundir import LOCK, run_directory

SRC = Path(__file__).resolve().parents[1] / "src"


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


# ---------------------------------------------------------------- a training run and its directory


def _train_config(d: Path, model_dir, **extra) -> str:
    return _write_config(d, model_dir, train={"lr": 1e-3, "max_steps": 2, "save_steps": 1, "per_device_batch_size": 2,
                                              "grad_accum": 1, "warmup_ratio": 0.0, "logging_steps": 1,
                                              "progress_bar": False}, **extra)


@pytest.mark.usefixtures("one_thread")
def test_train_into_a_finished_run_needs_resume_or_overwrite(tiny_model_dir, tmp_path, capsys):
    """A second run into a finished run is refused naming --resume and --overwrite; --overwrite starts afresh."""
    cfg = _train_config(tmp_path, tiny_model_dir)
    run = tmp_path / "run"
    assert main(["train", cfg]) == 0
    (run / "notes.txt").write_text("from the first run")
    before = snapshot(run)
    refused(["train", cfg], capsys, str(run), "--resume", "--overwrite", "checkpoint-2/", "model/")
    assert snapshot(run) == before
    refused(["train", cfg, "--resume", "--overwrite"], capsys, "pass one of them")
    assert main(["train", cfg, "--overwrite"]) == 0
    assert not (run / "notes.txt").exists() and (run / "model" / "config.json").is_file()
    assert json.loads((run / "run.json").read_text())["steps"] == 2


def test_train_refuses_a_directory_that_holds_no_run(tiny_model_dir, tmp_path, capsys):
    """A non-empty directory no run wrote is refused, even with --overwrite (which deletes only a run)."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "paper.tex").write_text("x")
    cfg = _train_config(tmp_path, tiny_model_dir, output_dir=str(project))
    for flags in ([], ["--overwrite"]):
        refused(["train", cfg, *flags], capsys, "holds no pivotune run", "paper.tex")
        assert sorted(p.name for p in project.iterdir()) == ["paper.tex"]


def test_a_run_whose_data_are_rejected_leaves_nothing(tiny_model_dir, tmp_path, capsys):
    """Data rejected: the run directory (and the parents it made) is gone; an existing one is left as it was."""
    nested = tmp_path / "runs" / "new" / "run"
    cfg = _train_config(tmp_path, tiny_model_dir, output_dir=str(nested))
    (tmp_path / "alpaca_en.jsonl").write_text('{"instruction": "x", "output": "y"}\nnot json\n')
    refused(["train", cfg], capsys, "alpaca_en.jsonl")
    assert not (tmp_path / "runs").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    refused(["train", cfg, "--output-dir", str(empty)], capsys, "alpaca_en.jsonl")
    assert empty.is_dir() and not list(empty.iterdir())


def test_leftovers_of_a_run_killed_before_its_first_checkpoint_do_not_block(tiny_model_dir, tmp_path, one_thread):
    """A run directory holding only a killed run's leftovers (no checkpoint, no model) is reused."""
    run = mark_output(tmp_path / "run", "train")
    (run / ".partial-checkpoint-1").mkdir()
    (run / "regulation.json").write_text("{}")
    (run / LOCK).write_text(json.dumps({"pid": 999999999}))
    assert main(["train", _train_config(tmp_path, tiny_model_dir)]) == 0
    assert not (run / "regulation.json").exists() and (run / "model").is_dir()


# ---------------------------------------------------------------- the run lock

HOLD_LOCK = """
import sys, time
from pathlib import Path
from pivotune.train.rundir import RunLock
RunLock(Path(sys.argv[1])).acquire().announce()
print("LOCKED", flush=True)
time.sleep(600)
"""


@pytest.fixture
def lock_holder(tmp_path):
    """Start a process holding RUN's lock; yields (run_dir, process)."""
    run = tmp_path / "run"
    run.mkdir()
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "LOCKED"
        yield run, proc
    finally:
        proc.kill()
        proc.wait()


def test_a_second_run_is_refused_while_the_first_holds_the_lock(lock_holder, tiny_model_dir, tmp_path, capsys,
                                                                 one_thread):
    """While another process holds RUN, train exits 2 naming its pid and touches nothing; once it died, train runs."""
    run, holder = lock_holder
    cfg = _train_config(tmp_path, tiny_model_dir)
    before = snapshot(run)
    refused(["train", cfg], capsys, f"pid {holder.pid}", "in use by another pivotune run")
    refused(["train", cfg, "--resume"], capsys, f"pid {holder.pid}")
    assert snapshot(run) == before
    holder.kill()
    holder.wait()
    assert json.loads((run / LOCK).read_text())["pid"] == holder.pid   # the dead holder's lock file is still there
    assert main(["train", cfg]) == 0
    assert (run / "model" / "config.json").is_file()


def test_only_global_rank_0_takes_the_lock(lock_holder, monkeypatch):
    """Other ranks of a launch share rank 0's directory: they neither lock nor claim it."""
    run, holder = lock_holder
    monkeypatch.setenv("RANK", "1")
    with run_directory(run) as d:
        assert d == run
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(PivotuneError, match=f"pid {holder.pid}"):
        with run_directory(run):
            pass


CONCURRENT = """
import sys, time
from pathlib import Path
import pivotune.train.resume as resume
publish = resume.publish

def paused_publish(staged, final):   # checkpoint-4's files are written, not yet published: wait for the test
    if final.name == "checkpoint-4":
        print("PAUSED", flush=True)
        while not Path(sys.argv[2]).exists():
            time.sleep(0.05)
    publish(staged, final)

resume.publish = paused_publish
from pivotune.cli import main
sys.exit(main(["train", sys.argv[1]]))
"""


@pytest.mark.slow
def test_two_train_processes_on_one_directory(tiny_model_dir, tmp_path):
    """A second `pivotune train` (fresh or --resume) while the first runs exits 2 naming the first's pid and
    deletes nothing, not even the first's half-written checkpoint; the first finishes intact."""
    cfg = _write_config(tmp_path, tiny_model_dir, train={
        "lr": 1e-3, "max_steps": 6, "save_steps": 2, "save_total_limit": 1, "per_device_batch_size": 2,
        "grad_accum": 1, "warmup_ratio": 0.0, "logging_steps": 1, "progress_bar": False})
    run, go = tmp_path / "run", tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    log = (tmp_path / "first.log").open("w")
    first = subprocess.Popen([sys.executable, "-c", CONCURRENT, cfg, str(go)], stdout=subprocess.PIPE, stderr=log,
                             text=True, env=env)
    try:
        assert "PAUSED\n" in iter(first.stdout.readline, ""), (tmp_path / "first.log").read_text()[-3000:]
        assert (run / ".partial-checkpoint-4" / "checkpoint-4").is_dir() and (run / "checkpoint-2").is_dir()
        for extra in ([], ["--resume"]):
            second = subprocess.run([sys.executable, "-m", "pivotune", "train", cfg, *extra], env=env,
                                    capture_output=True, text=True, timeout=300)
            assert second.returncode == 2, second.stderr[-3000:]
            assert f"pid {first.pid}" in second.stderr and "Traceback" not in second.stderr
            assert (run / ".partial-checkpoint-4" / "checkpoint-4").is_dir() and (run / "checkpoint-2").is_dir()
        go.touch()
        first.communicate(timeout=300)
        assert first.returncode == 0, (tmp_path / "first.log").read_text()[-3000:]
    finally:
        first.kill()
        log.close()
    assert json.loads((run / "run.json").read_text())["steps"] == 6
    assert (run / "model" / "model.safetensors").is_file() and (run / "checkpoint-6" / "trainer_state.json").is_file()
    assert not list(run.glob(".partial-*"))


def test_a_stale_lock_from_a_dead_process_does_not_block(tmp_path):
    """A lock file naming a process that has died is taken over."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK).write_text(json.dumps({"pid": dead.pid, "host": "here", "started": "then"}))
    with run_directory(run):
        assert json.loads((run / LOCK).read_text())["pid"] == os.getpid()
    with run_directory(run):   # released on leaving: taken again
        pass
