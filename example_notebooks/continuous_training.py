"""The closed loop on the embedded default, in a few minutes:

    biopsies.ipynb served (version 1) -> the lab's new scanner reads cell sizes 1.5x larger: the live measurements
    drift -> the drift schedule fires -> retrained on the lab's labelled export, which now has cases from the new
    scanner -> the gate passes -> version 2 rolled out progressively (20%, 50%, production), each step judged on
    errors, latency and the diagnoses sent back -> promoted.
    Then a broken export (the new scanner's cases lost) -> retrained -> version 3 passes the gate on its own test
    split, but on live cases it is worse than version 2 -> rolled back; version 2 stays in production.

Run from anywhere: `python3 example_notebooks/continuous_training.py [--dir DIR] [--interval SECONDS]`. It works in
a fresh folder (a temporary one unless --dir is given). The data is scikit-learn's bundled breast cancer set; a
thread stands in for the clinic (a request per case, with its own x-request-id) and for the lab (the confirmed
diagnosis sent back to POST /feedback). The same verbs exist on the command line:

    jupyter-mlops deploy biopsies
    jupyter-mlops schedule add biopsies.ipynb --name retrain --on-drift biopsies --threshold 0.2 \\
        --register biopsies --require "accuracy>=0.9" --rollout
    jupyter-mlops scheduler            # fires the schedule and drives the rollouts
    jupyter-mlops deploy history biopsies
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path

import jupyter_mlops
from jupyter_mlops.schedule import Scheduler
from jupyter_mlops.workspace import Workspace

NOTEBOOK = Path(__file__).resolve().parent / "biopsies.ipynb"
SCALE = 1.5  # the new scanner's reading of sizes (radius, perimeter, area) against the old one's


def cases():
    """(measurements, diagnosis) of every case, and the three parts: the lab's first export, the cases it
    measured on the new scanner, and the clinic's live cases."""
    import numpy as np
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    X = data.data.rename(columns=lambda c: c.replace(" ", "_"))
    y = data.target.map({0: "malignant", 1: "benign"})
    order = np.random.default_rng(0).permutation(len(X))
    return X, y, order[:250], order[250:420], order[420:]


def new_scanner(X):
    """Measurements as the new scanner reads them."""
    X = X.copy()
    sizes = [c for c in X.columns if any(w in c for w in ("radius", "perimeter", "area"))]
    X[sizes] = X[sizes] * SCALE
    return X


def export(path: Path, parts: list) -> None:
    """The lab's labelled export: each part is (measurements, diagnoses)."""
    import pandas as pd

    pd.concat([X.assign(diagnosis=y) for X, y in parts]).to_csv(path, index=False)


class Clinic:
    """Live cases on a thread: each one answered by the deployment, its diagnosis sent back as feedback."""

    def __init__(self, url: str, X, y):
        self.url, self.X, self.y = url, X, y
        self.scanner_changed = False
        self.answered = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._send, daemon=True)
        self.thread.start()

    def _send(self) -> None:
        import requests

        with requests.Session() as session:
            i = 0
            while not self.stop.is_set():
                row = self.X.iloc[[i % len(self.X)]]
                row = new_scanner(row) if self.scanner_changed else row
                rid = uuid.uuid4().hex
                answer = session.post(f"{self.url}/invocations", headers={"x-request-id": rid},
                                      json={"dataframe_split": {"columns": list(row.columns),
                                                                "data": row.values.tolist()}})
                if answer.ok:  # the lab confirms the diagnosis (later, in life)
                    session.post(f"{self.url}/feedback", json={"request_id": rid,
                                                               "label": self.y.iloc[i % len(self.y)]})
                    self.answered += 1
                i += 1

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)


def drive(scheduler: Scheduler, ws, until, timeout: float = 300.0) -> None:
    """Scheduler passes (what `jupyter-mlops scheduler` does) until `until()`, saying what each one did."""
    deadline = time.time() + timeout
    while not until():
        if time.time() > deadline:
            raise SystemExit(f"nothing more happened in {timeout:g} s; see `jupyter-mlops deploy history biopsies "
                             f"--workspace {ws.root}`")
        for done in scheduler.tick():
            if "rollout" in done:
                print(f"   rollout: {done['status'].replace('_', ' ')}: {done['reason']}")
            else:
                print(f"   schedule {done['schedule']} {done['status']}: {done.get('reason', '')}")
        time.sleep(1)


def rollout_of(ws, version: int) -> dict | None:
    return next((r for r in jupyter_mlops.deploy_history("biopsies", workspace=ws.root) if r["canary"] == version),
                None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", help="work here instead of a temporary folder")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds each rollout step lasts at least")
    args = parser.parse_args()
    folder = Path(args.dir or tempfile.mkdtemp(prefix="mlops-loop-"))
    folder.mkdir(parents=True, exist_ok=True)
    notebook = folder / NOTEBOOK.name
    shutil.copy(NOTEBOOK, notebook)
    X, y, first, rescanned, live = cases()
    export(folder / "biopsies.csv", [(X.iloc[first], y.iloc[first])])
    ws = Workspace(folder / ".mlops")

    run = jupyter_mlops.run(notebook, workspace=ws.root, check=True)
    v1 = jupyter_mlops.register(run["id"], "biopsies", require=["accuracy>=0.9"], workspace=ws.root)
    jupyter_mlops.promote("biopsies", v1["version"], workspace=ws.root)
    served = jupyter_mlops.deploy("biopsies", workspace=ws.root, port=0)
    print(f"1. version 1 trained on {len(first)} cases (accuracy {run['metrics']['accuracy']:.3f}), in production at "
          f"{served['url']}")
    added = jupyter_mlops.add_schedule(
        notebook, "retrain", on_drift="biopsies", threshold=0.2, every="10s", register="biopsies",
        require=["accuracy>=0.9"], rollout={"steps": "20,50,100", "interval": args.interval, "min_requests": 150},
        workspace=ws.root)
    print(f"2. {added['lines'][0]}")
    clinic = Clinic(served["url"], X.iloc[live], y.iloc[live])
    scheduler = Scheduler(ws)
    try:
        while clinic.answered < 100:
            time.sleep(0.2)
        clinic.scanner_changed = True
        export(folder / "biopsies.csv", [(X.iloc[first], y.iloc[first]),
                                         (new_scanner(X.iloc[rescanned]), y.iloc[rescanned])])
        print(f"3. the clinic's new scanner reads sizes {SCALE}x; the lab's export now has {len(rescanned)} cases "
              "measured on it")
        drive(scheduler, ws, lambda: (rollout_of(ws, 2) or {}).get("status", "running") != "running")
        fired = jupyter_mlops.schedule_history("retrain", workspace=ws.root)[-1]
        print(f"   the retraining run {fired['run_id']}: " + "; ".join(fired["reason"].split("; ")[1:]))
        print(f"4. version 2: {rollout_of(ws, 2)['status'].replace('_', ' ')}")

        export(folder / "biopsies.csv", [(X.iloc[first], y.iloc[first])])  # a broken export job
        print("5. a broken export: the new scanner's cases are lost; retrained by hand (`jupyter-mlops schedule run "
              "retrain`)")
        fired = jupyter_mlops.fire_schedule("retrain", workspace=ws.root)
        print(f"   {fired['reason'] or fired['status']}")
        drive(scheduler, ws, lambda: (rollout_of(ws, 3) or {}).get("status", "running") != "running")
        production = next(a["version"] for a in ws.store.aliases("biopsies") if a["alias"] == "production")
        print(f"6. version 3: {rollout_of(ws, 3)['status'].replace('_', ' ')}; version {production} is in production")
        test = jupyter_mlops.abtest("biopsies", workspace=ws.root)
        print("7. accuracy on the live cases sent back: " + ", ".join(
            f"{v['variant']} v{v['version']} {v['value']:.3f} (n={v['n']})" for v in test["variants"]))
    finally:
        clinic.close()
        served["server"].stop()
    print(f"   every decision and its reason: jupyter-mlops deploy history biopsies --workspace {ws.root}")


if __name__ == "__main__":
    main()
