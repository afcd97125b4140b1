"""What shadowing and request logging add to the primary's p50, measured in one script with them off and on.

Serves the digits example's model three ways (plain; with the request log; with the request log and a shadow of
the same version) and times one-row requests with `wrk -c1` (goal: logging + shadow add <= 0.2 ms to p50).

    python benchmarks/rollout_overhead.py [--seconds 8]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from serve_vs_mlflow import wrk
    from sklearn.datasets import load_digits

    import jupyter_mlops
    from jupyter_mlops.serving.app import create_app
    from jupyter_mlops.serving.server import deployment, serve_in_background
    from jupyter_mlops.workspace import Workspace

    work = Path(tempfile.mkdtemp(prefix="mlops-rollout-bench-"))
    nb = work / "digits.ipynb"
    shutil.copy(ROOT / "example_notebooks" / "digits.ipynb", nb)
    run = jupyter_mlops.run(nb)
    jupyter_mlops.register(run["id"], "digits", workspace=work / ".mlops")
    ws = Workspace(work / ".mlops")
    body = work / "body.json"
    body.write_text(json.dumps({"instances": load_digits().data[:1].tolist()}))

    setups = {"plain": ({}, None), "request log": ({}, work / "logs-a"),
              "request log + shadow": ({"shadow": 1}, work / "logs-b")}
    p50 = {name: [] for name in setups}
    for _ in range(args.repeat):  # alternate, so drift in machine load hits each alike
        for name, (options, logs) in setups.items():
            app = create_app(deployment(ws, "digits", **options), log_folder=logs)
            server = serve_in_background(app)
            try:
                wrk(f"{server.url}/invocations", body, 1, 1)
                p50[name].append(wrk(f"{server.url}/invocations", body, 1, args.seconds)["p50"])
            finally:
                server.stop()
                if app.state.request_log:
                    app.state.request_log.close()
    base = sorted(p50["plain"])[len(p50["plain"]) // 2]
    print(f"wrk -c1, one-row requests, {args.seconds}s x {args.repeat}, median p50")
    for name, values in p50.items():
        value = sorted(values)[len(values) // 2]
        print(f"  {name:<22} p50 {value:.3f} ms   added {value - base:+.3f} ms")
    print("goal: request log + shadow add <= 0.2 ms")
    shutil.rmtree(work, ignore_errors=True)
    subprocess.run(["true"])


if __name__ == "__main__":
    main()
