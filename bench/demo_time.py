"""Time `pivotune demo` on this machine: full cold, full warm, quick cold.

Prints each wall time beside its budget (cold full ≤ 600 s, warm full ≤ 300 s,
quick cold ≤ 120 s) and the ratio. Uses a fresh cache directory so "cold" is
really cold. Usage: python bench/demo_time.py [--skip-full]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PIVOTUNE = [sys.executable, "-m", "pivotune"]


def timed(args: list[str], cache: Path, out: Path) -> float:
    env = {**os.environ, "PIVOTUNE_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    subprocess.run([*PIVOTUNE, "demo", *args, "--out", str(out)], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--skip-full", action="store_true", help="only time the quick demo")
    opts = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows.append(("demo --quick (cold cache)", timed(["--quick"], tmp / "cache-q", tmp / "q"), 120))
        if not opts.skip_full:
            rows.append(("demo (cold cache)", timed([], tmp / "cache", tmp / "full1"), 600))
            rows.append(("demo (warm cache)", timed([], tmp / "cache", tmp / "full2"), 300))
    print(f"{'run':<28}{'seconds':>10}{'budget':>10}{'ratio':>8}")
    for name, secs, budget in rows:
        print(f"{name:<28}{secs:>10.1f}{budget:>10d}{secs / budget:>8.2f}")


if __name__ == "__main__":
    main()
