"""What ``pivotune demo`` and ``pivotune sweep`` show while they run, and where everything else goes.

On a terminal: one live progress view (rich) — the stage (world/base, probe, train, evaluate, report), the
method and seed, the step out of the run's steps, elapsed time and ETA — then the tables. Not on a terminal
(CI, tests, a pipe): one plain line per stage instead. Either way the libraries' logs (transformers,
datasets, lm-evaluation-harness, pivotune's own INFO lines) and the Trainer's log dicts go to the session's
log file, and so does what a library writes to stdout or stderr itself (lm-evaluation-harness's request
bars, in their final state); ``pivotune -v`` keeps the console as it was (logs, bars and the Trainer's dicts
on it) and adds the plain stage lines. Everything is done with the libraries' own switches (logging
handlers and filters, transformers' and datasets' progress-bar toggles, a TrainerCallback) and the standard
library's ``contextlib.redirect_stdout``/``redirect_stderr``, each put back when the session ends.
"""

from __future__ import annotations

import io
import logging
import sys
import time
from contextlib import ExitStack, redirect_stderr, redirect_stdout
from pathlib import Path
from typing import TextIO

from transformers import TrainerCallback

log = logging.getLogger(__name__)

STAGES = ("world/base", "probe", "train", "evaluate", "report")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def clock(seconds: float) -> str:
    """``1:05`` or ``1:02:05``."""
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class _QuietConsole(logging.Filter):
    """On the console only errors, and pivotune's own warnings; the log file has everything."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or (record.levelno >= logging.WARNING
                                                   and record.name.startswith("pivotune"))


class _LogStream(io.TextIOBase):
    """A text stream whose lines become log records; a carriage return starts the line over, as on a
    terminal, so a progress bar leaves one line: its final state."""

    def __init__(self, logger: logging.Logger):
        self.logger, self._line = logger, ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        for i, part in enumerate(text.split("\n")):
            if i:
                self._emit()
            pieces = (self._line + part).split("\r")   # the text after the last carriage return replaces the line
            self._line = next((p for p in reversed(pieces) if p), "")
        return len(text)

    def _emit(self) -> None:
        if self._line.strip():
            self.logger.info("%s", self._line.rstrip())
        self._line = ""

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self._emit()
        super().close()


class StepReporter(TrainerCallback):
    """Tells the console each optimizer step and writes the Trainer's log dicts to the log file."""

    def __init__(self, console: StudyConsole):
        self.console = console

    def on_train_begin(self, args, state, control, **kwargs):
        self.console.advance(state.global_step, state.max_steps)

    def on_step_end(self, args, state, control, **kwargs):
        self.console.advance(state.global_step, state.max_steps)

    def on_log(self, args, state, control, logs=None, **kwargs):
        log.info("%s step %d/%d: %s", self.console.current, state.global_step, state.max_steps, logs)


class StudyConsole:
    """A context manager for one demo or sweep. ``runs``: how many training runs it will do (for the ETA);
    ``live``: force the live view on or off (default: on when ``stream`` is a terminal and not verbose);
    ``append``: add to ``log_file`` (a worker of the study, :mod:`.parallel`) instead of starting it afresh.
    Runs that go side by side report with a ``slot`` each (a line of the live view)."""

    def __init__(self, log_file: str | Path, *, runs: int, verbose: bool = False, stream: TextIO | None = None,
                 live: bool | None = None, name: str = "demo", append: bool = False):
        self.log_file, self.runs, self.verbose, self.name = Path(log_file), runs, verbose, name
        self.append = append
        self.side_by_side = False   # runs go side by side (.parallel): stage lines count finished runs
        self.stream = stream if stream is not None else sys.stdout
        self.live = (not verbose and self.stream.isatty()) if live is None else live
        self.current = ""          # "train xllama seed 0", for the log lines
        self.started = self.run_started = self.last_run_end = time.perf_counter()
        self.done_runs = 0
        self._stack: ExitStack | None = None
        self._progress = self._overall = None
        self._slots: dict[int, object] = {}   # slot -> its line (task id) in the live view

    # ------------------------------------------------------------------ what the demo calls

    def stage(self, stage: str, method: str | None = None, seed: int | None = None, steps: int | None = None,
              note: str = "", slot: int = 0) -> None:
        """A stage begins: for one run (``method``, ``seed``) or for the whole study."""
        who = self._begin(stage, method, seed)
        log.info("stage: %s%s%s", self.current, f" ({steps} steps)" if steps else "", f": {note}" if note else "")
        if self._progress is not None:
            self._progress.reset(self._line(slot), description=self.current + (f" · {note}" if note else ""),
                                 total=steps, count=f"0/{steps} steps" if steps else "")
            return
        parts = [f"{stage:<10} {who.strip() or note}".rstrip()] + ([f"{steps} steps"] if steps else [])
        parts += [note] if note and who else []
        if method is not None:
            parts.append(f"run {min(self.done_runs + 1, self.runs)}/{self.runs}" if not self.side_by_side
                         else f"{self.done_runs}/{self.runs} runs done")
        eta = self.eta()
        if eta is not None:
            parts.append(f"ETA {clock(eta)}")
        print(f"[{clock(time.perf_counter() - self.started):>7}] " + " · ".join(parts), file=self.stream, flush=True)

    def _begin(self, stage: str, method: str | None, seed: int | None) -> str:
        """Check the stage and name it in ``current`` (the Trainer's log lines); returns " method seed N"."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; stages: {STAGES}")
        who = "" if method is None else f" {method}" + ("" if seed is None else f" seed {seed}")
        self.current = f"{stage}{who}"
        return who

    def note(self, message: str, slot: int = 0) -> None:
        """A library's progress message (the base model's pretraining): to the log, and on the live line."""
        log.info("%s", message)
        if self._progress is not None:
            self._progress.update(self._line(slot), description=f"{self.current} · {message}")

    def advance(self, step: int, steps: int, slot: int = 0) -> None:
        if self._progress is not None:
            self._progress.update(self._line(slot), completed=step, total=steps, count=f"{step}/{steps} steps")

    def _line(self, slot: int):
        """The live view's line of ``slot`` (added when first used)."""
        if slot not in self._slots:
            self._slots[slot] = self._progress.add_task("", total=None, count="")
        return self._slots[slot]

    def run_done(self) -> None:
        """One training run (train, evaluate, probe) finished."""
        self.done_runs += 1
        self.last_run_end = time.perf_counter()
        if self._progress is not None:
            self._progress.update(self._overall, completed=self.done_runs,
                                  count=f"{self.done_runs}/{self.runs} runs")

    def eta(self) -> float | None:
        """Seconds left: the runs left at the pace of the finished ones (time since the runs began per finished
        run, which counts runs going side by side), less the time since the last one finished (None before
        the first run ends)."""
        if not self.done_runs or self.done_runs >= self.runs:
            return None
        pace = (self.last_run_end - self.run_started) / self.done_runs
        return max(0.0, pace * (self.runs - self.done_runs) - (time.perf_counter() - self.last_run_end))

    def first_run(self) -> None:
        """The runs begin now (the world, base model and base probe are ready): the ETA counts from here."""
        self.run_started = self.last_run_end = time.perf_counter()

    # ------------------------------------------------------------------ setting up and putting back

    def __enter__(self) -> StudyConsole:
        stack = ExitStack()
        try:
            self._quiet_libraries(stack)
            if not self.verbose:
                from ..train.trainer import reporting_to

                stack.enter_context(reporting_to(StepReporter(self)))
            if self.live:
                self._start_live(stack)
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is not None:   # the cause in the log file; the command line reports the error itself
            log.info("%s stopped during %s", self.name, self.current or "setup", exc_info=exc)
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.close()

    def _quiet_libraries(self, stack: ExitStack) -> None:
        import datasets
        import transformers.utils.logging as tf_logging

        root = logging.getLogger()
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        if not self.append:   # a fresh log; opened for appending, so the study's workers can add to it
            self.log_file.write_text("", encoding="utf-8")
        handler = logging.FileHandler(self.log_file, mode="a", encoding="utf-8")
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler.setLevel(logging.DEBUG if self.verbose else logging.INFO)
        root.addHandler(handler)
        stack.callback(handler.close)
        stack.callback(root.removeHandler, handler)
        level = root.level
        root.setLevel(min(level or logging.WARNING, handler.level))
        stack.callback(root.setLevel, level)
        logging.captureWarnings(True)
        stack.callback(logging.captureWarnings, False)
        # transformers writes to its own stderr handler and does not propagate: send it through the root
        tf_logging.disable_default_handler()
        tf_logging.enable_propagation()
        stack.callback(tf_logging.enable_default_handler)
        stack.callback(tf_logging.disable_propagation)
        if self.verbose:
            return
        quiet = _QuietConsole()
        for lg in (root, logging.getLogger("datasets")):
            for h in lg.handlers:
                if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                    h.addFilter(quiet)
                    stack.callback(h.removeFilter, quiet)
        if tf_logging.is_progress_bar_enabled():
            tf_logging.disable_progress_bar()
            stack.callback(tf_logging.enable_progress_bar)
        if not datasets.are_progress_bars_disabled():
            datasets.disable_progress_bars()
            stack.callback(datasets.enable_progress_bars)
        # what libraries print themselves (lm-evaluation-harness's tqdm bars have no switch) goes to the log
        for name, redirect in (("stdout", redirect_stdout), ("stderr", redirect_stderr)):
            stream = _LogStream(logging.getLogger(f"{__name__}.{name}"))
            stack.callback(stream.close)
            stack.enter_context(redirect(stream))

    def _start_live(self, stack: ExitStack) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[count]}"),
                            TimeElapsedColumn(), TimeRemainingColumn(),
                            console=Console(file=self.stream), redirect_stdout=False, redirect_stderr=False)
        self._overall = progress.add_task(self.name, total=self.runs, count=f"0/{self.runs} runs")
        progress.start()
        self._progress = progress
        self._line(0)
        stack.callback(self._stop_live)

    def _stop_live(self) -> None:
        progress, self._progress = self._progress, None
        progress.stop()


__all__ = ["STAGES", "StepReporter", "StudyConsole", "clock"]
