"""The model server vs `mlflow models serve`, on the same fitted scikit-learn model (the digits example's SVC).

Runs the example, registers it, serves it with `jupyter-mlops serve`, and (when an MLflow is available) saves the
same fitted estimator as an MLflow model and serves it with `mlflow models serve --env-manager local`. Both get the
same one-row `dataframe_split` request from `wrk` on 127.0.0.1:
  - `wrk -c10` for throughput and p99 (goal: >= 3x MLflow's throughput, p99 <= 15 ms, zero errors);
  - `wrk -c1` for p50, and the overhead: server p50 minus the in-process `predict` time (goal <= 0.5 ms).

    python benchmarks/serve_vs_mlflow.py [--mlflow PATH_TO_MLFLOW_EXECUTABLE] [--seconds 10]

MLflow is not a dependency of jupyter-mlops: install it anywhere (e.g. its own venv) and pass --mlflow.
Needs `wrk` (Debian package).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{url} never answered")


def wrk(url: str, body_file: Path, connections: int, seconds: int, headers: dict | None = None) -> dict:
    """wrk's figures for POSTing the file's bytes (JSON unless `headers` say otherwise)."""
    script = body_file.with_suffix(".lua")
    headers = {"Content-Type": "application/json", **(headers or {})}
    # every byte as a decimal escape: a binary body survives Lua's string reading unchanged
    body = "".join(f"\\{b}" for b in body_file.read_bytes())
    script.write_text('wrk.method = "POST"\n' + "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())
                      + f'wrk.body = "{body}"\n')
    out = subprocess.run(["wrk", f"-c{connections}", f"-t{min(connections, 2)}", f"-d{seconds}s", "--latency",
                          "-s", str(script), url], capture_output=True, text=True, check=True).stdout

    def ms(label: str) -> float:
        value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: .*", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "p50": ms("50%"), "p99": ms("99%"),
            "errors": int(errors.group(1)) if errors else 0, "socket_errors": socket_errors.group(0) if socket_errors
            else ""}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mlflow", default=shutil.which("mlflow"), help="the mlflow executable")
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()

    import joblib
    import pandas as pd
    from sklearn.datasets import load_digits

    import jupyter_mlops
    from jupyter_mlops.registry import load_predict

    work = Path(tempfile.mkdtemp(prefix="mlops-serve-bench-"))
    nb = work / "digits.ipynb"
    shutil.copy(ROOT / "example_notebooks" / "digits.ipynb", nb)
    run = jupyter_mlops.run(nb)
    version = jupyter_mlops.register(run["id"], "digits", workspace=work / ".mlops")
    predict = load_predict(version["package"])
    columns = [c["name"] for c in version["schema"]]
    row = load_digits().data[:1].tolist()
    body = work / "body.json"
    body.write_text(json.dumps({"dataframe_split": {"columns": columns, "data": row}}))

    # in-process predict on the same DataFrame the server builds from that body
    frame = pd.DataFrame(row, columns=pd.Index(columns, dtype=object)).astype(float)  # as ServedModel builds it
    for _ in range(200):
        predict(frame)
    samples = []
    for _ in range(2000):
        start = time.perf_counter()
        predict(frame)
        samples.append(time.perf_counter() - start)
    inproc_ms = statistics.median(samples) * 1000

    results = {}
    port = free_port()
    ours = subprocess.Popen([str(Path(sys.executable).parent / "jupyter-mlops"), "serve", "digits", "--port",
                             str(port), "--workspace", str(work / ".mlops")], stderr=subprocess.DEVNULL)
    try:
        wait_ready(f"http://127.0.0.1:{port}/ping")
        url = f"http://127.0.0.1:{port}/invocations"
        wrk(url, body, 10, 2)  # warm up
        results["jupyter-mlops"] = (wrk(url, body, 10, args.seconds), wrk(url, body, 1, args.seconds))
    finally:
        ours.terminate()
        ours.wait(30)

    if args.mlflow:
        model_dir = work / "mlflow-model"
        estimator = predict.__globals__["model"]  # the fitted SVC that `predict` closes over
        joblib.dump(estimator, work / "svc.joblib")
        python = Path(args.mlflow).parent / "python"
        subprocess.run([str(python), "-c", "import joblib, mlflow.sklearn; mlflow.sklearn.save_model("
                        f"joblib.load({str(work / 'svc.joblib')!r}), {str(model_dir)!r})"], check=True,
                       capture_output=True)
        port = free_port()
        # mlflow starts `uvicorn` by name: its own environment's bin must come first on PATH
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"file://{work / 'mlruns'}",
               "PATH": f"{Path(args.mlflow).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        theirs = subprocess.Popen([args.mlflow, "models", "serve", "-m", str(model_dir), "-p", str(port),
                                   "--env-manager", "local", "-h", "127.0.0.1"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_ready(f"http://127.0.0.1:{port}/ping")
            url = f"http://127.0.0.1:{port}/invocations"
            wrk(url, body, 10, 2)
            results["mlflow models serve"] = (wrk(url, body, 10, args.seconds), wrk(url, body, 1, args.seconds))
        finally:
            os.killpg(theirs.pid, 15)
            theirs.wait(30)

    print(f"one-row dataframe_split requests, wrk on 127.0.0.1, {args.seconds}s each, {os.cpu_count()} CPUs")
    print(f"  in-process predict p50: {inproc_ms:.3f} ms")
    for name, (many, one) in results.items():
        print(f"  {name:<22} -c10: {many['rps']:8.0f} req/s  p99 {many['p99']:6.2f} ms  errors {many['errors']}"
              f"{'  ' + many['socket_errors'] if many['socket_errors'] else ''}   -c1: p50 {one['p50']:.3f} ms"
              f"  overhead {one['p50'] - inproc_ms:.3f} ms")
    if "mlflow models serve" in results:
        ratio = results["jupyter-mlops"][0]["rps"] / results["mlflow models serve"][0]["rps"]
        print(f"  throughput ratio vs MLflow: {ratio:.2f}x (goal >= 3)")
    print("goals: p99 <= 15 ms at -c10, zero errors, overhead <= 0.5 ms")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
