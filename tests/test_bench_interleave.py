"""bench/interleave.py: the benches' one way of timing variants (round-robin, medians of >= 5 steps)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import interleave  # noqa: E402


def test_round_robin_alternates_variants_after_warmup():
    """Steps run A, B, C, A, B, C, ...; warm-up rounds are run but not timed."""
    calls, clock = [], iter(range(100))

    def step(name):
        calls.append(name)
        return float(next(clock)), name

    t = interleave.round_robin(step, ["a", "b", "c"], warmup=1, steps=5)
    assert calls == ["a", "b", "c"] * 6
    assert t.seconds["a"] == [3.0, 6.0, 9.0, 12.0, 15.0]
    assert t.median("b") == 10.0 and t.speedup("a", "b") == pytest.approx(10 / 9)
    assert len(t.results["c"]) == 6


def test_fewer_than_five_timed_steps_are_refused():
    """A median of fewer than MIN_TIMED steps is not reported: the run stops with a message."""
    with pytest.raises(SystemExit, match="at least 5 timed steps"):
        interleave.time_callables({"a": lambda: None}, steps=4)


def test_subprocess_workers_step_in_turn_and_report(tmp_path):
    """Workers are stepped one at a time in round-robin order over pipes; each reports at the end."""
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(BENCH)!r})
        import interleave
        name, log = sys.argv[1], sys.argv[2]
        n = 0
        def step():
            global n
            n += 1
            print("noise on stdout is ignored")
            with open(log, "a") as f:
                f.write(name)
            return {{"seconds": 0.5 if name == "fast" else 1.0, "n": n}}
        interleave.serve(step, lambda: {{"steps": n}}, {{"ready": name}})
    """))
    log = tmp_path / "order.txt"
    workers = {n: interleave.Worker(n, [sys.executable, str(script), n, str(log)]) for n in ("slow", "fast")}
    t = interleave.time_workers(workers, warmup=1, steps=5)
    assert log.read_text() == "slowfast" * 6
    assert t.speedup("fast", "slow") == 2.0
    assert t.reports["fast"] == {"ready": "fast", "steps": 6}


def test_a_failing_worker_names_itself_and_shows_its_error(tmp_path):
    """A worker that dies is reported by name with the end of its stderr, not as a hang."""
    script = tmp_path / "bad.py"
    script.write_text("raise SystemExit('model too big for this machine')\n")
    with pytest.raises(interleave.WorkerFailed, match="variant x exited with status 1:\nmodel too big"):
        interleave.time_workers({"x": interleave.Worker("x", [sys.executable, str(script)])})
