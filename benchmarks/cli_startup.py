"""What a CLI command costs before it does anything (issue 16): wall time of short commands as new processes,
against baselines run alternately in the same script: the bare interpreter, and reading the same notebook with
nbformat alone (the floor for any tool that reads notebooks with it). Medians of --repeat rounds.

    python benchmarks/cli_startup.py [--repeat 15] [--notebook example_notebooks/digits.ipynb]
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


def commands(notebook: Path, work: Path) -> dict[str, list[str]]:
    cli = [sys.executable, "-m", "jupyter_mlops.cli"]
    read = f"import nbformat; nbformat.read({str(notebook)!r}, as_version=4)"
    return {
        "python -c pass (baseline)": [sys.executable, "-c", "pass"],
        "nbformat.read alone (baseline)": [sys.executable, "-c", read],
        "papermill --help (peer)": [sys.executable, "-m", "papermill", "--help"],
        "jupyter-mlops --version": [*cli, "--version"],
        "jupyter-mlops validate": [*cli, "validate", str(notebook)],
        "jupyter-mlops compile": [*cli, "compile", str(notebook), "-o", str(work / "bundle")],
        "jupyter-mlops runs (empty)": [*cli, "runs", "--workspace", str(work / ".mlops")],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--notebook", type=Path, default=ROOT / "example_notebooks" / "digits.ipynb")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mlops-cli-"))
    shutil.copy(args.notebook, work / args.notebook.name)
    timed = commands(work / args.notebook.name, work)
    seconds: dict[str, list[float]] = {name: [] for name in timed}
    for round_ in range(args.repeat + 1):  # alternating, so load on this shared machine hits all alike
        for name, command in timed.items():
            started = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=work)
            if round_:  # the first round fills the OS's caches
                seconds[name].append(time.perf_counter() - started)
    bare = statistics.median(seconds["python -c pass (baseline)"])
    floor = statistics.median(seconds["nbformat.read alone (baseline)"])
    print(f"{'command':<32} {'median':>8} {'- python':>9} {'/ nbformat.read':>16}")
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f"{name:<32} {median:>7.3f}s {median - bare:>8.3f}s {median / floor:>15.2f}x")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
