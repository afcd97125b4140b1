"""Our model server against MLServer (the Open Inference Protocol's reference server) and `mlflow models serve`,
on the same model, in one script (issue 17).

The model: scikit-learn's LogisticRegression(max_iter=5000) on the wine data (bundled with scikit-learn: nothing
downloaded), fitted in each server's own environment from the same rows with the same settings, so every server
predicts with the same coefficients. Ours serves it from a notebook run and `register`, like a user would; each peer
gets a virtual environment of its own, built by this script under --venvs (kept for the next run), and a peer that
cannot be installed is skipped with a message.

Each server gets 1-row requests in the body format it handles best (ours and MLServer: an OIP tensor [1, 13];
MLflow: `inputs`) from `wrk` on 127.0.0.1, at 10 and at 50 connections, one server at a time, once in one process
and once with each server's own way of using --workers cores (ours: `--workers N`; MLflow: uvicorn's `--workers
N`; MLServer: `parallel_workers: N`, its inference pool). Printed: req/s, p50, p99, errors, and ours against each
peer with the same number of workers, and the records ours' request log dropped (a log that cannot keep up
would flatter the figures). Ours also gets 1,000-row requests, in OIP JSON, in the binary tensor data extension
(tritonclient's default) and in MLflow's `inputs`, against calling the packaged `predict` in-process on the same
rows, back to back for as long as each wrk run, right after it (rows over elapsed time, as wrk counts the server's;
on a shared machine the same minute matters: the baseline alone moved from 627,000 to 975,000 rows/s between two
runs).

    python benchmarks/serve_vs_peers.py [--seconds 10] [--workers 2] [--venvs ~/.cache/jupyter-mlops-peers]
                                        [--peers mlflow,mlserver]

Needs `wrk` (Debian package).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from serve_vs_mlflow import free_port, wait_ready, wrk  # noqa: E402

FIT = "from sklearn.datasets import load_wine\nfrom sklearn.linear_model import LogisticRegression\n" \
      "X, y = load_wine(return_X_y=True, as_frame=True)\nmodel = LogisticRegression(max_iter=5000).fit(X, y)\n"
# uvloop 0.22 raises from get_event_loop() where MLServer 1.7's inference workers call it: they die at start
PEERS = {"mlflow": ["mlflow", "scikit-learn", "pandas"], "mlserver": ["mlserver", "mlserver-sklearn", "uvloop<0.22"]}


def venv(root: Path, name: str) -> Path | None:
    """The peer's environment (built once), or None with the reason printed."""
    python = root / name / "bin" / "python"
    if python.exists():
        return python
    print(f"building a virtual environment for {name} under {root} (once)...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(root / name)], check=True)
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", *PEERS[name]], capture_output=True, text=True)
    if done.returncode:
        print(f"{name} skipped: pip could not install it:\n{done.stderr[-2000:]}", file=sys.stderr)
        shutil.rmtree(root / name, ignore_errors=True)
        return None
    return python


def register_ours(work: Path) -> None:
    import jupyter_mlops
    from conftest import write_notebook

    notebook = write_notebook(work / "wine.ipynb", [
        ("from sklearn.datasets import load_wine\nX, y = load_wine(return_X_y=True, as_frame=True)", "data"),
        ("from sklearn.linear_model import LogisticRegression\nmodel = LogisticRegression(max_iter=5000).fit(X, y)",
         "train"),
        ("def predict(frame):\n    return model.predict(frame)", "serve")])
    run = jupyter_mlops.run(notebook, workspace=work / ".mlops")
    assert run["status"] == "succeeded", run["error"]
    jupyter_mlops.register(run["id"], "wine", workspace=work / ".mlops")


def ours(work: Path, port: int, workers: int) -> subprocess.Popen:
    return subprocess.Popen([str(Path(sys.executable).parent / "jupyter-mlops"), "serve", "wine", "--port", str(port),
                             "--workers", str(workers), "--workspace", str(work / ".mlops")],
                            stderr=subprocess.DEVNULL, start_new_session=True)


def mlflow(python: Path, work: Path, port: int, workers: int) -> subprocess.Popen:
    if not (work / "mlflow-model").exists():
        subprocess.run([str(python), "-c", FIT + f"import mlflow.sklearn\nmlflow.sklearn.save_model(model, "
                                                  f"{str(work / 'mlflow-model')!r})"], check=True, capture_output=True)
    # it starts `uvicorn` found on PATH: its own environment's, not the one this script runs in
    env = {**os.environ, "PATH": f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.Popen([str(python.parent / "mlflow"), "models", "serve", "-m", str(work / "mlflow-model"),
                             "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "--workers", str(workers)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def mlserver(python: Path, work: Path, port: int, workers: int) -> subprocess.Popen:
    folder = work / "mlserver"
    saved = folder / "wine" / "model.joblib"
    if not saved.exists():
        (folder / "wine").mkdir(parents=True)
        subprocess.run([str(python), "-c", FIT + f"import joblib\njoblib.dump(model, {str(saved)!r})"], check=True,
                       capture_output=True)
    (folder / "wine" / "model-settings.json").write_text(json.dumps({
        "name": "wine", "implementation": "mlserver_sklearn.SKLearnModel", "parameters": {"uri": "./model.joblib"}}))
    (folder / "settings.json").write_text(json.dumps({"http_port": port, "grpc_port": free_port(),
                                                      "metrics_port": free_port(), "host": "127.0.0.1",
                                                      "parallel_workers": workers}))
    return subprocess.Popen([str(python.parent / "mlserver"), "start", str(folder)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    """The server and the workers it started (its own session): SIGTERM, then SIGKILL if it lingers."""
    import signal

    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 30)):
        try:
            os.killpg(process.pid, sig)
            process.wait(wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def big_rows():
    import numpy as np
    from sklearn.datasets import load_wine

    return np.tile(load_wine().data, (6, 1))[:1000]


def bodies(work: Path) -> dict[str, Path]:
    from sklearn.datasets import load_wine

    row = load_wine().data[:1].tolist()
    tensor = {"inputs": [{"name": "input-0", "shape": [1, 13], "datatype": "FP64", "data": row}]}
    big = {"inputs": [{"name": "input-0", "shape": [1000, 13], "datatype": "FP64", "data": big_rows().tolist()}]}
    out = {}
    for name, body in (("tensor", tensor), ("inputs", {"inputs": row}), ("big", big),
                       ("big-inputs", {"inputs": big_rows().tolist()})):
        out[name] = work / f"{name}.json"
        out[name].write_text(json.dumps(body))
    # the same 1,000 rows as tritonclient sends them by default: the binary tensor data extension
    raw = big_rows().astype("<f8").tobytes()
    header = json.dumps({"inputs": [{"name": "input-0", "shape": [1000, 13], "datatype": "FP64",
                                     "parameters": {"binary_data_size": len(raw)}}]}).encode()
    out["big-binary"] = work / "big-binary.bin"
    out["big-binary"].write_bytes(header + raw)
    return out


def binary_headers(body: Path) -> dict:
    header_size = body.read_bytes().index(b"}]}") + 3
    return {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(header_size)}


def measure(url: str, body: Path, seconds: int) -> dict:
    wrk(url, body, 10, 2)  # warm up
    return {c: wrk(url, body, c, seconds) for c in (10, 50)}


def log_dropped(url: str) -> int:
    """Request records our server's log dropped (its queue was full), summed over its workers."""
    import urllib.request

    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as reply:
        text = reply.read().decode()
    return int(sum(float(line.split()[-1]) for line in text.splitlines()
                   if line.startswith("mlops_request_log_dropped_total")))


_LOADED: dict = {}  # the packaged model and its 1,000-row frame, loaded once per run


def in_process_rows_per_second(work: Path, seconds: float) -> float:
    """The packaged `predict` called here on the 1,000 rows, as the server calls it (a DataFrame), back to back for
    `seconds`: rows over elapsed time, measured as the server's rows/s are."""
    import time

    import pandas as pd

    from jupyter_mlops.serving.server import load
    from jupyter_mlops.workspace import Workspace

    if work not in _LOADED:
        model = load(Workspace(work / ".mlops"), "wine")
        _LOADED[work] = model, pd.DataFrame(big_rows(), columns=model.column_index)
    model, frame = _LOADED[work]
    for _ in range(20):
        model.predict(frame)
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        model.predict(frame)
        calls += 1
    return 1000 * calls / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--venvs", type=Path, default=Path.home() / ".cache" / "jupyter-mlops-peers")
    parser.add_argument("--peers", default="mlflow,mlserver")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="the processes each server gets in its second configuration (default: the CPUs)")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("needs wrk: apt-get install wrk")
    work = Path(tempfile.mkdtemp(prefix="mlops-peers-"))
    body = bodies(work)
    register_ours(work)
    servers = [("jupyter-mlops", lambda port, workers: ours(work, port, workers), "/v2/models/wine/infer",
                "/v2/health/ready", body["tensor"])]
    for peer in [p for p in args.peers.split(",") if p]:
        python = venv(args.venvs, peer)
        if python is None:
            continue
        start = {"mlflow": mlflow, "mlserver": mlserver}[peer]
        path, ready, payload = (("/invocations", "/ping", body["inputs"]) if peer == "mlflow" else
                                ("/v2/models/wine/infer", "/v2/models/wine/ready", body["tensor"]))
        servers.append((peer, lambda port, workers, start=start, python=python: start(python, work, port, workers),
                        path, ready, payload))
    results, big, dropped = {}, {}, {}
    for workers in sorted({1, args.workers}):
        for name, start, path, ready, payload in servers:
            port = free_port()
            process = start(port, workers)
            try:
                wait_ready(f"http://127.0.0.1:{port}{ready}", 300)
                results[name, workers] = measure(f"http://127.0.0.1:{port}{path}", payload, args.seconds)
                if name == "jupyter-mlops":
                    dropped[workers] = log_dropped(f"http://127.0.0.1:{port}")
                if name == "jupyter-mlops":  # 1,000-row requests, two per worker at a time
                    for form, route, sent, headers in (
                            ("OIP JSON", path, body["big"], None),
                            ("OIP binary", path, body["big-binary"], binary_headers(body["big-binary"])),
                            ("MLflow inputs", "/invocations", body["big-inputs"], None)):
                        served = wrk(f"http://127.0.0.1:{port}{route}", sent, 2 * workers, args.seconds,
                                     headers)["rps"] * 1000
                        big[workers, form] = served, in_process_rows_per_second(work, args.seconds)
            except Exception as exc:  # a peer that would not start: said, and the others still measured
                print(f"{name} with {workers} workers skipped: {exc}", file=sys.stderr)
            finally:
                stop(process)
    print(f"1-row requests, wrk on 127.0.0.1, {args.seconds} s each, {os.cpu_count()} CPUs")
    print(f"{'server':<16} {'workers':>7} {'conns':>5} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} "
          f"{'ours / it':>10}")
    for (name, workers), by_connections in results.items():
        for connections, r in by_connections.items():
            base = results.get(("jupyter-mlops", workers), {}).get(connections, {}).get("rps")
            ratio = f"{base / r['rps']:9.2f}x" if base and name != "jupyter-mlops" else ""
            print(f"{name:<16} {workers:>7} {connections:>5} {r['rps']:>8.0f} {r['p50']:>8.2f} {r['p99']:>8.2f} "
                  f"{r['errors']:>7} {ratio:>10}" + (f"  {r['socket_errors']}" if r["socket_errors"] else ""))
    for workers, count in dropped.items():
        print(f"jupyter-mlops with {workers} worker(s): {count} request log records dropped")
    if big:
        for (workers, form), (rows_per_second, alone) in big.items():
            print(f"1,000-row requests in {form}, {workers} worker(s): {rows_per_second:,.0f} rows/s served, "
                  f"{alone:,.0f} rows/s calling predict in-process back to back on one core "
                  f"({alone / rows_per_second:.2f}x; goal <= 1.25x)")
    print(textwrap.dedent("""
        goals (issue 17): ours >= 3,000 req/s at 10 connections on 2 cores, >= 2x MLServer, >= 6x MLflow, p99 <= 10 ms,
        zero errors; at 50 connections zero errors and p99 <= 30 ms"""))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
