"""The demo's console: stage lines (or a live view) on the console, the libraries' output in the log file."""

from __future__ import annotations

import io
import logging
import sys

import datasets
import pytest
import transformers.utils.logging as tf_logging
from tqdm import tqdm

from pivotune.config import load_config
from pivotune.data.records import Sample
from pivotune.toy.console import StudyConsole, _LogStream
from pivotune.train.run import train

pytestmark = pytest.mark.usefixtures("one_thread")


def _train(model_dir, out):
    """Three optimizer steps of xllama on a tiny model, logging every step (the Trainer's dicts)."""
    samples = [Sample(instruction=f"Say {i}.", output="the cat sees a dog", role=role, lang=lang)
               for i in range(4) for role, lang in (("en", "en"), ("tgt", "el"))]
    base = {"model": str(model_dir), "method": "xllama", "languages": ["el"], "output_dir": str(out),
            "max_seq_len": 256, "train": {"lr": 1e-3, "max_steps": 3, "per_device_batch_size": 2, "grad_accum": 1,
                                         "warmup_ratio": 0.0, "scheduler": "constant", "logging_steps": 1,
                                         "progress_bar": False}}
    train(load_config(base=base), samples, save_checkpoints=False)


def _session(tmp_path, model_dir, **kwargs):
    """A session that trains, logs through three libraries, draws a tqdm bar and prints, as the demo's runs do."""
    with StudyConsole(tmp_path / "demo.log", runs=1, **kwargs) as console:
        console.first_run()
        console.stage("train", "xllama", 0, steps=3)
        _train(model_dir, tmp_path / "run")
        console.stage("evaluate", "xllama", 0)
        logging.getLogger("transformers.trainer").warning("a transformers warning")
        logging.getLogger("lm_eval.evaluator").info("an lm_eval line")
        for _ in tqdm(range(3), desc="Generating test split"):
            pass
        print("a stray print")
        console.run_done()
    return (tmp_path / "demo.log").read_text(encoding="utf-8")


@pytest.fixture
def console_handler():
    """A root StreamHandler on the (captured) stderr, as `pivotune`'s logging.basicConfig installs."""
    handler = logging.StreamHandler(sys.stderr)
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)


def test_quiet_session_shows_stages_and_logs_the_rest(tmp_path, tiny_model_dir, capsys, console_handler):
    """Not a terminal, not verbose: one plain line per stage naming method, seed and steps; the Trainer's
    dicts, library logs, bars and prints only in the log file; every switch put back afterwards."""
    streams = sys.stdout, sys.stderr
    log = _session(tmp_path, tiny_model_dir)
    out, err = capsys.readouterr()
    assert "train      xllama seed 0 · 3 steps · run 1/1" in out and "evaluate   xllama seed 0 · run 1/1" in out
    for noise in ("'loss'", "Generating test split", "a transformers warning", "an lm_eval line", "a stray print"):
        assert noise not in out + err
        assert noise in log
    assert "train xllama seed 0 step 3/3: {'loss'" in log
    assert "Generating test split: 100%" in log and log.count("Generating test split") == 1   # the final state
    assert tf_logging.is_progress_bar_enabled() and not datasets.are_progress_bars_disabled()
    assert not console_handler.filters and (sys.stdout, sys.stderr) == streams
    assert not any(getattr(h, "baseFilename", "") == str(tmp_path / "demo.log") for h in logging.getLogger().handlers)


def test_verbose_session_keeps_the_console_as_before(tmp_path, tiny_model_dir, capsys, console_handler):
    """-v: the Trainer's dicts and the library logs stay on the console, the stage lines too; the log file
    also holds the logs."""
    log = _session(tmp_path, tiny_model_dir, verbose=True)
    out, err = capsys.readouterr()
    assert "'loss'" in out and "a stray print" in out and "train      xllama seed 0 · 3 steps" in out
    assert "a transformers warning" in err and "an lm_eval line" in err
    assert "a transformers warning" in log and "stage: train xllama seed 0 (3 steps)" in log


def test_live_view_draws_stage_steps_and_runs(tmp_path):
    """On a terminal the live view shows the stage, method, seed, step/steps and runs done."""
    stream = io.StringIO()
    with StudyConsole(tmp_path / "demo.log", runs=2, live=True, stream=stream) as console:
        console.first_run()
        console.stage("train", "prom", 1, steps=60)
        console.advance(30, 60)
        console.run_done()
    frame = stream.getvalue()
    assert "train prom seed 1" in frame and "30/60 steps" in frame and "1/2 runs" in frame


def test_log_stream_keeps_the_last_state_of_a_line():
    """A carriage return starts the line over, so a progress bar leaves one line: its final state."""
    records = []
    logger = logging.getLogger("pivotune.test.stream")
    logger.addHandler(handler := logging.Handler())
    handler.emit = lambda r: records.append(r.getMessage())
    logger.setLevel(logging.INFO)
    try:
        stream = _LogStream(logger)
        stream.write("\rbar  0%")
        stream.write("\rbar 50%\rbar 100%")
        stream.write("\nplain line\nhalf ")
        stream.write("done\n\n")
        stream.write("unfinished")
        stream.close()
    finally:
        logger.removeHandler(handler)
    assert records == ["bar 100%", "plain line", "half done", "unfinished"]
