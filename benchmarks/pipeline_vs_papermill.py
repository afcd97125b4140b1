"""A pipeline run of the example notebook vs one papermill run of the same whole notebook.

Both are measured here, in one script, alternating, and the ratio printed (goal: <= 1.25):
- CLI:        `jupyter-mlops run digits.ipynb`   vs  `papermill digits.ipynb out.ipynb`
- in-process: `jupyter_mlops.run(...)`           vs  `papermill.execute_notebook(...)` (imports already paid)

    python benchmarks/pipeline_vs_papermill.py [--repeat 5] [--notebook example_notebooks/digits.ipynb]
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--notebook", default=str(ROOT / "example_notebooks" / "digits.ipynb"))
    args = parser.parse_args()

    import papermill

    import jupyter_mlops

    work = Path(tempfile.mkdtemp(prefix="mlops-bench-"))
    nb = work / Path(args.notebook).name
    shutil.copy(args.notebook, nb)
    bindir = Path(sys.executable).parent

    def pm_cli():
        subprocess.run([str(bindir / "papermill"), str(nb), str(work / "pm-out.ipynb"), "--log-level", "ERROR",
                        "--no-progress-bar"], check=True, capture_output=True)

    def mlops_cli():
        subprocess.run([str(bindir / "jupyter-mlops"), "run", str(nb)], check=True, capture_output=True)

    def pm_inproc():
        papermill.execute_notebook(str(nb), str(work / "pm-out.ipynb"), progress_bar=False, cwd=str(work))

    def mlops_inproc():
        result = jupyter_mlops.run(nb)
        assert result["status"] == "succeeded", result["error"]

    # warm caches (disk, bytecode) once for each, then alternate so drift in machine load hits both alike
    for fn in (pm_cli, mlops_cli, pm_inproc, mlops_inproc):
        fn()
    times: dict[str, list[float]] = {"pm_cli": [], "mlops_cli": [], "pm_inproc": [], "mlops_inproc": []}
    for _ in range(args.repeat):
        for name, fn in (("pm_cli", pm_cli), ("mlops_cli", mlops_cli), ("pm_inproc", pm_inproc),
                         ("mlops_inproc", mlops_inproc)):
            times[name].append(timed(fn))
    med = {k: statistics.median(v) for k, v in times.items()}
    steps = len(jupyter_mlops.validate(nb).steps)
    print(f"notebook: {Path(args.notebook).name} ({steps} steps), {args.repeat} repeats, medians")
    print(f"  papermill CLI, whole notebook      {med['pm_cli']:6.2f} s")
    print(f"  jupyter-mlops run (CLI), pipeline  {med['mlops_cli']:6.2f} s   "
          f"ratio {med['mlops_cli'] / med['pm_cli']:.2f}")
    print(f"  papermill.execute_notebook         {med['pm_inproc']:6.2f} s")
    print(f"  jupyter_mlops.run (in-process)     {med['mlops_inproc']:6.2f} s   "
          f"ratio {med['mlops_inproc'] / med['pm_inproc']:.2f}")
    print("goal: ratio <= 1.25")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
