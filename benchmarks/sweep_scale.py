"""What a sweep costs as it grows (issue 16): a generated 2-step notebook with trivial compute (a shared data step
and a train step that reads the swept parameter), swept over N trials at --parallel 2, each size in a fresh
process. Prints wall time, the marginal cost per trial against the smallest size in the same script, and the
peak memory of the sweep's process (its kernels not counted).

    python benchmarks/sweep_scale.py [--trials 8,128,1000] [--parallel 2]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

SWEEP = """
import json, resource, sys, time
import jupyter_mlops
notebook, trials, parallel = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
started = time.perf_counter()
result = jupyter_mlops.sweep(notebook, {"k": list(range(trials))}, parallel=parallel, maximize="score",
                             workspace=sys.argv[4])
wall = time.perf_counter() - started
assert result["status"] == "succeeded", result["status"]
print(json.dumps({"wall": wall, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def notebook(folder: Path) -> Path:
    from conftest import write_notebook

    return write_notebook(folder / "sweep.ipynb", [
        ("k = 0", "parameters"),
        ("rows = list(range(100))", "data"),
        ("from jupyter_mlops import log_metrics\nlog_metrics(score=sum(rows) * k % 7)", "train")])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", default="8,128,1000")
    parser.add_argument("--parallel", type=int, default=2)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mlops-sweep-"))
    path = notebook(work)
    print(f"{'trials':>7} {'wall':>9} {'per trial':>10} {'marginal':>9} {'peak MB':>8}")
    first: tuple[int, float] | None = None
    for n in [int(t) for t in args.trials.split(",")]:
        done = subprocess.run([sys.executable, "-c", SWEEP, str(path), str(n), str(args.parallel),
                               str(work / f"ws{n}")], capture_output=True, text=True, check=True)
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        marginal = f"{(figures['wall'] - first[1]) / (n - first[0]):>8.3f}s" if first else f"{'-':>9}"
        first = first or (n, figures["wall"])
        print(f"{n:>7} {figures['wall']:>8.1f}s {figures['wall'] / n:>9.3f}s {marginal} {figures['peak_mb']:>8.0f}")


if __name__ == "__main__":
    main()
