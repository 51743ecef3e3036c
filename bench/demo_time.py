"""Time `pivotune demo` on this machine: full cold, full warm, quick cold, and the study mode `--seeds 3`.

Prints each wall time beside its budget (cold full ≤ 600 s, warm full ≤ 300 s,
quick cold ≤ 120 s, `--seeds 3` cold ≤ 1800 s) and the ratio. Uses a fresh
cache directory so "cold" is really cold (the default world's base model and
encoder are the shipped ones: cold means building the world's data and
installing them). The cold full run includes the study report (the demo's
last step) and prints its generated findings.
Usage: python bench/demo_time.py [--skip-full | --only-cold] [--seeds3] [--jobs N]
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


def timed(args: list[str], cache: Path, out: Path, jobs: int | None = None) -> float:
    env = {**os.environ, "PIVOTUNE_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    extra = ["--jobs", str(jobs)] if jobs else []
    subprocess.run([*PIVOTUNE, "demo", *args, *extra, "--out", str(out)], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--skip-full", action="store_true", help="only time the quick demo")
    ap.add_argument("--only-cold", action="store_true", help="only time the full demo from a cold cache")
    ap.add_argument("--seeds3", action="store_true", help="also time `pivotune demo --seeds 3` (cold cache)")
    ap.add_argument("--jobs", type=int, default=None, help="pass --jobs N to the demo (default: its own)")
    opts = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if not opts.only_cold:
            rows.append(("demo --quick (cold cache)", timed(["--quick"], tmp / "cache-q", tmp / "q", opts.jobs), 120))
        if not opts.skip_full:
            rows.append(("demo (cold cache)", timed([], tmp / "cache", tmp / "full1", opts.jobs), 600))
            if (tmp / "full1" / "report" / "report.html").is_file():
                print((tmp / "full1" / "report" / "report.md").read_text(encoding="utf-8").split("## Findings", 1)[-1]
                      .split("\n## ", 1)[0].strip())   # the report's generated findings, as the demo wrote them
        if not (opts.skip_full or opts.only_cold):
            rows.append(("demo (warm cache)", timed([], tmp / "cache", tmp / "full2", opts.jobs), 300))
        if opts.seeds3:
            rows.append(("demo --seeds 3 (cold cache)",
                         timed(["--seeds", "3"], tmp / "cache-s3", tmp / "seeds3", opts.jobs), 1800))
            print((tmp / "seeds3" / "report" / "report.md").read_text(encoding="utf-8").split("## Findings", 1)[-1]
                  .split("\n## ", 1)[0].strip())
    print(f"{'run':<28}{'seconds':>10}{'budget':>10}{'ratio':>8}")
    for name, secs, budget in rows:
        print(f"{name:<28}{secs:>10.1f}{budget:>10d}{secs / budget:>8.2f}")


if __name__ == "__main__":
    main()
