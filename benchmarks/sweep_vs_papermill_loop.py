"""An 8-trial sweep with --parallel 2 vs a sequential loop of 8 `papermill -p` runs of the same whole notebook.

Measured in one script, ratio printed (goal: <= 0.5 on 2 cores). With --scaling, also times the same sweep
with 1, 2, 4, ... workers up to the number of CPUs (for a machine with many cores).

    python benchmarks/sweep_vs_papermill_loop.py [--repeat 3] [--scaling] [--trials 8]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GRID = "0.5,1,2,4,8,16,32,64,128,256,512,1024,2048,4096,8192,16384"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--scaling", action="store_true", help="also time 1..ncpu workers")
    parser.add_argument("--notebook", default=str(ROOT / "example_notebooks" / "digits.ipynb"))
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mlops-bench-"))
    nb = work / Path(args.notebook).name
    shutil.copy(args.notebook, nb)
    bindir = Path(sys.executable).parent
    values = GRID.split(",")[: args.trials]

    def papermill_loop() -> None:
        for c in values:
            subprocess.run([str(bindir / "papermill"), str(nb), str(work / "out.ipynb"), "-p", "C", c,
                            "--log-level", "ERROR", "--no-progress-bar"], check=True, capture_output=True)

    def sweep(parallel: int) -> None:
        subprocess.run([str(bindir / "jupyter-mlops"), "sweep", str(nb), "-p", "C", ",".join(values),
                        "--parallel", str(parallel), "--maximize", "accuracy"], check=True, capture_output=True)

    def timed(fn) -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    loop, swept = [], []
    for _ in range(args.repeat):  # alternate, so drift in machine load hits both alike
        loop.append(timed(papermill_loop))
        swept.append(timed(lambda: sweep(2)))
    base = statistics.median(loop)
    print(f"{args.trials} trials of {nb.name}, {args.repeat} repeats, medians, {os.cpu_count()} CPUs")
    print(f"  sequential papermill -p loop          {base:6.2f} s")
    print(f"  jupyter-mlops sweep --parallel 2      {statistics.median(swept):6.2f} s   "
          f"ratio {statistics.median(swept) / base:.2f}   (goal <= 0.5)")
    if args.scaling:
        workers = 1
        while workers <= (os.cpu_count() or 1):
            t = statistics.median(timed(lambda w=workers: sweep(w)) for _ in range(args.repeat))
            print(f"  jupyter-mlops sweep --parallel {workers:<3}    {t:6.2f} s   ratio {t / base:.2f}")
            workers *= 2
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
