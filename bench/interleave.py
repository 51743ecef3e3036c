"""Interleaved timing for the bench scripts: the variants' steps alternate, medians are compared.

A shared machine's speed drifts (other processes, frequency scaling, caches), so timing all of variant A's
steps and then all of B's lets the drift land on one of them. Every bench here runs warm-up rounds (untimed)
and then timed rounds in round-robin order, A, B, C, A, B, C, ..., and reports each variant's median over at
least ``MIN_TIMED`` timed steps, side by side, with ratios of medians.

A variant runs either

* in this process, as a callable doing one step (:func:`time_callables`), or
* in a subprocess of its own, so that its peak memory is its own (:class:`Worker` here, :func:`serve` in the
  subprocess): the parent sends ``step`` on the worker's stdin and reads back one message line with the
  seconds the worker measured (synchronising its device around the step), so the subprocesses still take
  their steps one at a time, in round-robin order; ``done`` asks for a final report (peak memory ...).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

MIN_TIMED = 5
MESSAGE = "@@bench "   # prefix of the protocol's lines on a worker's stdout (anything else there is ignored)


@dataclass
class Timings:
    """Seconds of each variant's timed steps, in the order they ran, and what each worker reported at the end."""

    names: list[str]
    seconds: dict[str, list[float]]
    reports: dict[str, dict] = field(default_factory=dict)
    results: dict[str, list] = field(default_factory=dict)   # what each step returned (warm-up included)

    def median(self, name: str) -> float:
        return statistics.median(self.seconds[name])

    def speedup(self, fast: str, slow: str) -> float:
        """How many times faster ``fast`` is than ``slow`` (ratio of medians)."""
        return self.median(slow) / self.median(fast)

    def spread(self, name: str) -> str:
        """The timed steps, as printed beside a median."""
        return " ".join(f"{t:.3g}" for t in self.seconds[name])


def check_steps(steps: int) -> None:
    if steps < MIN_TIMED:
        raise SystemExit(f"--steps {steps}: at least {MIN_TIMED} timed steps per variant (medians of fewer "
                         "are not compared here)")


def round_robin(step: Callable[[str], tuple[float, object]], names: Iterable[str], *, warmup: int,
                steps: int) -> Timings:
    """Run ``step(name)`` for every name in turn, ``warmup`` untimed rounds then ``steps`` timed ones.

    ``step`` returns ``(seconds, result)``; the results of every step are kept in ``Timings.results``."""
    check_steps(steps)
    names = list(names)
    timings = Timings(names, {n: [] for n in names}, results={n: [] for n in names})
    for r in range(warmup + steps):
        for name in names:
            seconds, result = step(name)
            timings.results[name].append(result)
            if r >= warmup:
                timings.seconds[name].append(seconds)
    return timings


def time_callables(steps_by_name: dict[str, Callable[[], object]], *, warmup: int = 1, steps: int = MIN_TIMED,
                   sync: Callable[[], None] | None = None) -> Timings:
    """Interleaved timing of in-process variants; ``sync`` (e.g. ``torch.cuda.synchronize``) runs around each step."""
    def step(name):
        if sync:
            sync()
        t0 = time.perf_counter()
        result = steps_by_name[name]()
        if sync:
            sync()
        return time.perf_counter() - t0, result

    return round_robin(step, steps_by_name, warmup=warmup, steps=steps)


# ------------------------------------------------------------------------------------- subprocess variants

class WorkerFailed(RuntimeError):
    pass


class Worker:
    """A variant in its own process. ``cmd`` starts a script that calls :func:`serve` once it is ready."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str] | None = None):
        self.name = name
        self._stderr = tempfile.TemporaryFile(mode="w+")   # a pipe nobody reads could fill up and block the worker
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                     text=True, env=env)

    def read(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith(MESSAGE):
                return json.loads(line[len(MESSAGE):])
        self.proc.wait()
        self._stderr.seek(0)
        raise WorkerFailed(f"variant {self.name} exited with status {self.proc.returncode}:\n"
                           f"{self._stderr.read()[-4000:]}")

    def ask(self, command: str) -> dict:
        try:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass   # it died: read() says why
        return self.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._stderr.close()


def time_workers(workers: dict[str, Worker], *, warmup: int = 1, steps: int = MIN_TIMED) -> Timings:
    """Interleaved timing of subprocess variants: each is first awaited until ready (its model built), then
    stepped round-robin; each step's ``seconds`` are those the worker measured; at the end each reports."""
    try:
        ready = {name: w.read() for name, w in workers.items()}

        def step(name):
            msg = workers[name].ask("step")
            return msg["seconds"], msg

        timings = round_robin(step, workers, warmup=warmup, steps=steps)
        timings.reports = {name: {**ready[name], **w.ask("done")} for name, w in workers.items()}
        return timings
    finally:
        for w in workers.values():
            w.close()


def send(message: dict) -> None:
    print(MESSAGE + json.dumps(message), flush=True)


def serve(step: Callable[[], dict], report: Callable[[], dict], ready: dict | None = None) -> None:
    """The worker's side: announce readiness, then answer ``step`` (``step()`` returns a dict with ``seconds``)
    and ``done`` (``report()``, then return) from stdin."""
    send(ready or {})
    for line in sys.stdin:
        command = line.strip()
        if command == "step":
            send(step())
        elif command == "done":
            send(report())
            return
        else:
            raise SystemExit(f"bench worker: unknown command {command!r}")


# ------------------------------------------------------------------------------- a worker's peak memory

def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """A worker's memory around its steps. On an accelerator: ``max_memory_allocated`` (``peak``) and its rise
    over what was allocated before the first step (``step``). On a CPU: the highest RSS sampled every 2 ms
    while a step runs (sampling pauses between steps, when the other variants run), its rise over the RSS
    before the first step, and ``ru_maxrss`` of the whole process."""

    def __init__(self, device):
        import torch

        self.accelerator = None if device.type == "cpu" else torch.cuda if device.type == "cuda" else torch.accelerator
        if self.accelerator:
            self.accelerator.synchronize()
            self.base = self.accelerator.memory_allocated()
            self.accelerator.reset_peak_memory_stats()
        else:
            self.base = self.peak = _rss_bytes()
            self._active, self._stop = threading.Event(), threading.Event()
            threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self):
        while not self._stop.is_set():
            self._active.wait()
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(0.002)

    def sync(self) -> None:
        if self.accelerator:
            self.accelerator.synchronize()

    def step_started(self) -> None:
        if not self.accelerator:
            self._active.set()

    def step_ended(self) -> None:
        if not self.accelerator:
            self._active.clear()
            self.peak = max(self.peak, _rss_bytes())

    def report(self) -> dict:
        if self.accelerator:
            peak = self.accelerator.max_memory_allocated()
            return {"peak_bytes": peak, "step_bytes": peak - self.base}
        self._stop.set()
        self._active.set()
        total = max(self.peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        return {"peak_bytes": total, "step_bytes": self.peak - self.base}


def serve_training_steps(step: Callable[[], float], device, ready: dict | None = None) -> None:
    """:func:`serve` for a worker whose step is one training step returning its loss: times it (device
    synchronised) and reports its peak memory at the end."""
    memory = PeakMemory(device)

    def timed():
        memory.sync()
        memory.step_started()
        t0 = time.perf_counter()
        loss = step()
        memory.sync()
        seconds = time.perf_counter() - t0
        memory.step_ended()
        return {"seconds": seconds, "loss": loss}

    serve(timed, memory.report, ready)
