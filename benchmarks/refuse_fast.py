"""Bad input is refused by `run` and `sweep` as fast as by `validate`: no kernel start-up is waited for.

Each case is a mistake found before anything runs. The CLI is timed on it three ways, alternating, and the medians
printed with `run`'s and `sweep`'s time over `validate`'s on the same notebook, from the best of the repeats (the
least disturbed by a shared machine) and from the medians (goal: <= +0.5 s; before the fix, +60 s: the kernel
warm-up waited for a configuration that never came):

    python benchmarks/refuse_fast.py [--repeat 3]
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

import nbformat.v4 as v4

ROOT = Path(__file__).resolve().parent.parent


def notebook(path: Path, cells: list) -> Path:
    nb_cells = []
    for source, *tags in cells:
        cell = v4.new_code_cell(source)
        if tags:
            cell.metadata["tags"] = tags
        nb_cells.append(cell)
    nb = v4.new_notebook(cells=nb_cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    import nbformat

    nbformat.write(nb, str(path))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mlops-bench-refuse-"))
    digits = work / "digits.ipynb"
    shutil.copy(ROOT / "example_notebooks" / "digits.ipynb", digits)
    good = [("C = 1.0", "parameters"), ("import math\nx = math.pi", "data"), ("y = x * C", "train")]
    cases = {
        "unknown parameter": (digits, ["-p", "CC", "1"]),
        "mistyped parameter": (digits, ["-p", "C", "abc"]),
        "unknown tag": (notebook(work / "tag.ipynb", [good[0], ("x = 1", "trian"), good[2]]), []),
        "undefined name": (notebook(work / "name.ipynb", [good[0], ("x = z + 1", "data"), good[2]]), []),
        "untagged notebook": (notebook(work / "untagged.ipynb", [("x = 1",), ("y = x",)]), []),
        "syntax error": (notebook(work / "syntax.ipynb", [good[0], ("x = (1", "data"), good[2]]), []),
    }
    cli = str(Path(sys.executable).parent / "jupyter-mlops")

    def timed(command: list[str], refused: bool = True) -> float:
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=work)
        elapsed = time.perf_counter() - start
        if refused:  # (validate takes no parameters: on a parameter mistake it passes, and is the baseline)
            assert done.returncode == 1 and "error" in done.stderr, (command, done.returncode, done.stderr[-500:])
        return elapsed

    print(f"{'case':<20} {'validate':>9} {'run':>9} {'sweep':>9}   run - validate    sweep - validate")
    print(f"{'':<20} {'best':>9} {'best':>9} {'best':>9}   {'best':>6} {'median':>7}   {'best':>6} {'median':>7}")
    worst = 0.0
    for case, (nb, params) in cases.items():
        times: dict[str, list[float]] = {"validate": [], "run": [], "sweep": []}
        sweep_params = params if params else ["-p", "C", "1,2"]
        if case == "unknown parameter":
            sweep_params = ["-p", "CC", "1,2"]
        for _ in range(args.repeat):
            times["validate"].append(timed([cli, "validate", str(nb)], refused=not params))
            times["run"].append(timed([cli, "run", str(nb), *params]))
            times["sweep"].append(timed([cli, "sweep", str(nb), *sweep_params]))
        best = {k: min(v) for k, v in times.items()}
        med = {k: statistics.median(v) for k, v in times.items()}
        worst = max(worst, best["run"] - best["validate"], best["sweep"] - best["validate"])
        print(f"{case:<20} {best['validate']:>8.2f}s {best['run']:>8.2f}s {best['sweep']:>8.2f}s   "
              f"{best['run'] - best['validate']:>+5.2f}s {med['run'] - med['validate']:>+6.2f}s   "
              f"{best['sweep'] - best['validate']:>+5.2f}s {med['sweep'] - med['validate']:>+6.2f}s")
    print(f"worst (best of {args.repeat}): {worst:+.2f} s over validate (goal <= +0.5 s)")

    # the same in one process (imports paid once): what refusing costs beyond validating, without the noise of
    # starting Python
    import jupyter_mlops
    from jupyter_mlops.errors import MlopsError

    print(f"\nin-process, median of {args.repeat * 2}:")
    for case, (nb, params) in cases.items():
        parameters = dict(zip(params[1::3], params[2::3]))
        times = {"validate": [], "run": []}
        for _ in range(args.repeat * 2):
            for verb in times:
                start = time.perf_counter()
                try:
                    jupyter_mlops.validate(nb) if verb == "validate" else jupyter_mlops.run(nb, parameters)
                except MlopsError:
                    pass
                times[verb].append(time.perf_counter() - start)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"{case:<20} validate {med['validate'] * 1000:>6.0f} ms   run {med['run'] * 1000:>6.0f} ms   "
              f"run - validate {(med['run'] - med['validate']) * 1000:>+5.0f} ms")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
