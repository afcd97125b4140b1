"""What listing and ranking runs cost as a store grows (issue 16): 1k, 10k (and, with --sizes, 100k) runs.

The store is filled through its own API (create_run with 4 steps, record_metrics, finish_run), like real runs.
For each size, in one script:
  - `jupyter-mlops runs --json`: seconds to the first run printed, and to the end (a subprocess, as a user runs it);
  - `jupyter_mlops.runs()`: the DataFrame (params.* and metrics.* columns);
  - `register best --metric accuracy`'s choice: the database ranks (store.best_run) vs loading every run and
    ranking in Python (what it did before), both timed here;
and the ratio of each figure to the smallest size's.

    python benchmarks/store_scale.py [--sizes 1000,10000,100000]
"""
from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def populate(workspace: Path, count: int) -> None:
    from jupyter_mlops.workspace import Workspace

    store = Workspace(workspace).store
    rng = random.Random(0)
    have = len(store.list_runs(steps=False))
    steps = [{"name": n, "position": i, "kind": n, "fingerprint": "f" * 64}
             for i, n in enumerate(("data", "train", "evaluate", "serve"))]
    for i in range(have, count):
        run_id = f"20260101-{i:06d}-{rng.randrange(16 ** 6):06x}"
        store.create_run(run_id, "/work/nb.ipynb", "h" * 64, {"C": rng.choice([0.1, 1, 10]), "seed": i}, "/tmp/run",
                         steps)
        store.record_metrics(run_id, "evaluate", {"accuracy": rng.random(), "f1_macro": rng.random()})
        store.finish_run(run_id, "succeeded" if rng.random() > 0.1 else "failed")


def first_and_total(command: list[str]) -> tuple[float, float]:
    """Seconds until the first run's id is printed, and until the command ends."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    first = None
    for line in process.stdout:
        if first is None and '"id"' in line:
            first = time.perf_counter() - started
    process.wait()
    return first or float("nan"), time.perf_counter() - started


def measure(workspace: Path) -> dict[str, float]:
    import jupyter_mlops
    from jupyter_mlops import api
    from jupyter_mlops.workspace import Workspace

    store = Workspace(workspace).store
    out: dict[str, float] = {}
    out["runs --json: first run"], out["runs --json: all"] = first_and_total(
        [sys.executable, "-m", "jupyter_mlops.cli", "runs", "--json", "--workspace", str(workspace)])
    started = time.perf_counter()
    frame = jupyter_mlops.runs(workspace=workspace)
    out["runs() DataFrame"] = time.perf_counter() - started
    assert "metrics.accuracy" in frame
    started = time.perf_counter()
    best = store.best_run("accuracy")
    out["best run: database"] = time.perf_counter() - started
    started = time.perf_counter()
    loaded = [r for r in store.list_runs() if r["status"] == "succeeded" and "accuracy" in r["metrics"]]
    python_best = max(loaded, key=lambda r: r["metrics"]["accuracy"])["id"]
    out["best run: load all (before)"] = time.perf_counter() - started
    assert best == python_best, (best, python_best)
    for name, query in (("panel page: newest", {}), ("panel page: accuracy>0.9", {"filter": "accuracy>0.9",
                                                                                   "sort": "metrics.accuracy"}),
                        ("panel page: by a metric", {"sort": "metrics.accuracy"})):
        started = time.perf_counter()
        page = api.run_page(workspace=workspace, limit=100, **query)
        out[name] = time.perf_counter() - started
        assert len(page["runs"]) == 100
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000", help="store sizes, growing (default 1000,10000)")
    parser.add_argument("--workspace", type=Path, help="a workspace this script filled before (it only adds runs)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    workspace = args.workspace or Path(tempfile.mkdtemp(prefix="mlops-store-scale-")) / ".mlops"
    results = {}
    for size in sizes:
        started = time.perf_counter()
        populate(workspace, size)
        print(f"{size:,} runs in the store ({time.perf_counter() - started:.0f} s to add them)", file=sys.stderr)
        results[size] = measure(workspace)
    names = list(results[sizes[0]])
    print(f"{'measure':<30}" + "".join(f"{f'{s:,} runs':>22}" for s in sizes))
    for name in names:
        base = results[sizes[0]][name]
        cells = [f"{results[s][name]:8.3f} s ({results[s][name] / base:5.1f}x)" for s in sizes]
        print(f"{name:<30}" + "".join(f"{c:>22}" for c in cells))


if __name__ == "__main__":
    main()
