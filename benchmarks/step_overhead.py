"""What each step adds (issue 16): a generated notebook of N steps with trivial compute, run as a pipeline vs one
papermill run of the same whole notebook, both in this process (imports paid once), alternating; medians. Prints
the ratio and the per-step overhead ((ours - papermill) / N). Shapes: `chain` (each step passes a value to the
next) and `wide` (one data step, then N-1 steps that each read its value and could run at once).

    python benchmarks/step_overhead.py [--steps 4,16,64] [--shape chain|wide] [--repeat 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def chain(folder: Path, steps: int) -> Path:
    from conftest import write_notebook

    cells: list = [("x = 0", "parameters")]
    cells += [(f"x = x + 1\nvalue_{i} = [x] * 100", f"step:s{i}") for i in range(steps)]
    return write_notebook(folder / f"chain{steps}.ipynb", cells)


def wide(folder: Path, steps: int) -> Path:
    from conftest import write_notebook

    cells: list = [("x = 0", "parameters"), ("rows = list(range(100))", "step:data")]
    cells += [(f"total_{i} = sum(rows) + x + {i}", f"step:s{i}") for i in range(steps - 1)]
    return write_notebook(folder / f"wide{steps}.ipynb", cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="4,16,64")
    parser.add_argument("--shape", choices=["chain", "wide"], default="chain")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import papermill

    import jupyter_mlops

    work = Path(tempfile.mkdtemp(prefix="mlops-steps-"))
    print(f"{'steps':>6} {'papermill':>10} {'pipeline':>10} {'ratio':>7} {'per step':>10}")
    for n in [int(s) for s in args.steps.split(",")]:
        notebook = (chain if args.shape == "chain" else wide)(work, n)
        ours, theirs = [], []
        for i in range(args.repeat + 1):  # the first round warms caches and is not counted
            started = time.perf_counter()
            papermill.execute_notebook(str(notebook), str(work / f"out{n}-{i}.ipynb"), progress_bar=False,
                                       kernel_name="python3")
            pm = time.perf_counter() - started
            started = time.perf_counter()
            run = jupyter_mlops.run(notebook, workspace=work / ".mlops")
            mine = time.perf_counter() - started
            assert run["status"] == "succeeded", run["error"]
            if i:
                theirs.append(pm)
                ours.append(mine)
        pm, mine = statistics.median(theirs), statistics.median(ours)
        print(f"{n:>6} {pm:>9.2f}s {mine:>9.2f}s {mine / pm:>6.2f}x {(mine - pm) / n * 1000:>8.0f} ms")


if __name__ == "__main__":
    main()
