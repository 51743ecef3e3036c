"""The demo's training runs side by side: each run (train, evaluate, probe) in a worker process with its share
of the CPU cores.

A model this small cannot keep two cores busy with one run: its matrices are too small for torch's threads to
split well, and generation is a Python loop between small matmuls. Two runs with one thread each finish almost
twice as fast as two runs one after the other with two threads each. Workers are spawned processes (a forked
torch can deadlock in its thread pools); each sends its progress (stage, step) to the study's console through
a queue, and appends its libraries' logs to the study's log file. A run's result does not depend on the
number of workers beyond the thread count torch uses (reductions in another order round differently).
"""

from __future__ import annotations

import multiprocessing
import os
import queue as queue_mod
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from .console import StudyConsole

POLL_S = 0.2


def default_jobs(runs: int) -> int:
    """Workers for ``runs`` runs: one per CPU core this process may use, at most four (each holds a model and
    its evaluation in memory, and beyond four the runs' data loading contends), at most the runs."""
    return max(1, min(runs, usable_cores(), 4))


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@dataclass(frozen=True)
class Job:
    """One run of the study: a picklable call ``fn(*args, console)`` returning a picklable result."""

    key: tuple
    fn: Callable
    args: tuple


def run_jobs(jobs: Sequence[Job], console: StudyConsole, workers: int) -> dict[tuple, object]:
    """``{job.key: result}``. ``workers`` 1: in this process, in order. More: that many spawned workers, each
    with ``cores // workers`` torch threads; the first failure cancels the runs not yet started and is raised."""
    if workers <= 1:
        results = {}
        for job in jobs:
            results[job.key] = job.fn(*job.args, console)
            console.run_done()
        return results
    cores = usable_cores()
    console.side_by_side = True
    ctx = multiprocessing.get_context("spawn")
    manager = ctx.Manager()
    try:
        messages = manager.Queue()
        slots = manager.Queue()
        for slot in range(workers):
            slots.put(slot)
        threads = max(1, cores // workers)
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures: dict[Future, Job] = {
                pool.submit(_in_worker, job, messages, slots, str(console.log_file), threads, console.verbose): job
                for job in jobs}
            results, pending = {}, set(futures)
            try:
                while pending:
                    done, pending = wait(pending, timeout=POLL_S, return_when=FIRST_EXCEPTION)
                    _relay(messages, console)
                    for future in done:
                        results[futures[future].key] = future.result()   # a worker's error is raised here
                        console.run_done()
            except BaseException:
                for future in pending:
                    future.cancel()
                raise
            _relay(messages, console)
        return results
    finally:
        manager.shutdown()


def _relay(messages, console: StudyConsole) -> None:
    """Replay the workers' console calls on the study's console."""
    while True:
        try:
            method, args, kwargs = messages.get_nowait()
        except queue_mod.Empty:
            return
        getattr(console, method)(*args, **kwargs)


class _RelayConsole(StudyConsole):
    """A worker's console: the libraries are quieted and logged to the study's log file (appended) as in the
    study's process, and every progress call goes to the study's console, tagged with the worker's slot."""

    def __init__(self, log_file: Path, messages, slot: int, verbose: bool):
        super().__init__(log_file, runs=1, verbose=verbose, stream=open(os.devnull, "w"), live=False,
                         append=True)
        self.messages, self.slot = messages, slot

    def stage(self, stage, method=None, seed=None, steps=None, note=""):
        self._begin(stage, method, seed)   # .current names the run in its log lines; the study logs the stage
        self.messages.put(("stage", (stage, method, seed, steps, note), {"slot": self.slot}))

    def note(self, message):
        self.messages.put(("note", (message,), {"slot": self.slot}))

    def advance(self, step, steps):
        self.messages.put(("advance", (step, steps), {"slot": self.slot}))


def _in_worker(job: Job, messages, slots, log_file: str, threads: int, verbose: bool):
    import torch

    torch.set_num_threads(threads)
    slot = slots.get()
    try:
        with _RelayConsole(Path(log_file), messages, slot, verbose) as console:
            return job.fn(*job.args, console)
    finally:
        slots.put(slot)


__all__ = ["Job", "default_jobs", "run_jobs"]
