"""Continuous training on the embedded default, in under two minutes:

    a notebook reads a CSV -> scheduled on data change -> the first pass sets the baseline -> nothing changes, nothing
    runs -> a new export arrives -> the scheduler fires once -> the data check names the changed column -> the run
    fails (the notebook asks for strict checks) -> the webhook hears of it

Run from anywhere: `python3 example_notebooks/retrain_on_data_change.py [--dir DIR]`. It works in a fresh folder
(a temporary one unless --dir is given): the orders notebook, its CSV, the workspace. A small HTTP receiver on
127.0.0.1 stands in for Slack. Each stage is one call of the Python API; the same verbs exist as
`jupyter-mlops schedule add ... --on-data-change`, `jupyter-mlops notify add --webhook URL` and `%mlops ...`.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jupyter_mlops
from jupyter_mlops.schedule import Scheduler
from jupyter_mlops.workspace import Workspace

NOTEBOOK = Path(__file__).resolve().parent / "orders.ipynb"
EVERY = 10  # seconds between the scheduler's checks of the data


def write_orders(path: Path, countries: tuple[str, ...], seed: int) -> None:
    """An export of 400 orders: amount, items, country, and whether the order came back."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    amount = rng.gamma(2.0, 30.0, 400).round(2)
    items = rng.integers(1, 6, 400)
    returned = (rng.random(400) < 0.1 + 0.004 * amount.clip(0, 100)).astype(int)
    pd.DataFrame({"amount": amount, "items": items, "country": rng.choice(countries, 400),
                  "returned": returned}).to_csv(path, index=False)


def receiver() -> tuple[str, list]:
    """A webhook receiver on 127.0.0.1 that keeps what it is sent."""
    received: list = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}/hooks/retrain", received


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", help="work here instead of a temporary folder")
    folder = Path(parser.parse_args().dir or tempfile.mkdtemp(prefix="mlops-ct-"))
    folder.mkdir(parents=True, exist_ok=True)
    notebook = folder / NOTEBOOK.name
    shutil.copy(NOTEBOOK, notebook)
    write_orders(folder / "orders.csv", ("DE", "FR", "NL"), seed=1)
    ws = Workspace(folder / ".mlops")

    url, received = receiver()
    jupyter_mlops.add_notification(webhook=url, workspace=ws.root)
    added = jupyter_mlops.add_schedule(notebook, "retrain", on_data_change=True, every=f"{EVERY}s",
                                       workspace=ws.root)
    print(f"1. {added['lines'][0]}; failures go to {url}")

    scheduler = Scheduler(ws)  # what `jupyter-mlops scheduler` runs, a pass at a time here
    [first] = scheduler.tick(wait=True)
    baseline = jupyter_mlops.list_runs(workspace=ws.root)[0]
    print(f"2. first pass: {first['reason']}: run {baseline['id']} {baseline['status']}, "
          f"accuracy {baseline['metrics']['accuracy']:.3f}, read "
          + ", ".join(Path(d["path"]).name for d in baseline["data"]))

    time.sleep(EVERY)
    print(f"3. {EVERY} s later, the data unchanged: {len(scheduler.tick(wait=True))} runs fired")

    write_orders(folder / "orders.csv", ("DE", "FR", "NL", "PL"), seed=2)  # the shop now ships to Poland
    time.sleep(EVERY)
    [fired] = scheduler.tick(wait=True)
    run = jupyter_mlops.get_run(jupyter_mlops.schedule_history("retrain", workspace=ws.root)[-1]["run_id"],
                                workspace=ws.root)
    print(f"4. a new export: {fired['reason']}; run {run['id']} {run['status']}: {run['error']}")
    for finding in run["data_checks"]["findings"]:
        print(f"     {finding['message']}")

    deadline = time.time() + 30  # run.failed, data_check.failed, schedule.failed: sent on the sender's thread
    while len(received) < 3 and time.time() < deadline:
        time.sleep(0.1)
    print("5. the webhook heard: " + "; ".join(f"{m['event']}: {m['text'][:90]}" for m in received))
    time.sleep(EVERY)
    print(f"6. {EVERY} s later: {len(scheduler.tick(wait=True))} runs fired (one run per change; set a new baseline "
          f"with `jupyter-mlops baseline {notebook.name} RUN` once the new data is the norm)")


if __name__ == "__main__":
    main()
