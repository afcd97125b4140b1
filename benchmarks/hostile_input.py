"""Issue 14's hostile inputs, measured on a baseline revision and on this tree, in one script: what each costs the
model server, `monitor` and the cron preview before and after.

    python benchmarks/hostile_input.py                  # baseline: the revision before issue 14 (adb2b78)
    python benchmarks/hostile_input.py --baseline REV   # any other revision (a git worktree is made for it)
    python benchmarks/hostile_input.py --only big_body  # some of the probes

Each probe runs in a process of its own (clean memory figures); a probe that outlives its limit is reported as
"> limit". Figures are from a shared, noisy machine: compare the two columns of one run, not runs.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = [f"pixel_{i}" for i in range(64)]
PROBES = {  # name: (what, limit in seconds)
    "shape_bomb": ("1. 88-byte OIP body with shape [10**12, 0]", 60),
    "big_body": ("2. 56 MB body: answer, /ping stalled, RSS kept", 90),
    "half_headers": ("4. 1,000 connections that never finish their headers: still open after 15 s", 60),
    "monitor": ("5. monitor over a 72 MB request log", 120),
    "cron_preview": ("8. next 5 fire times of `* * * * *`", 70),
}


# -- the probes (run inside a child process whose sys.path starts with the tree under test) -----------------------
def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def _server():
    from jupyter_mlops.serving.app import ServedModel, create_app
    from jupyter_mlops.serving.server import serve_in_background

    schema = [{"name": c, "type": "float64", "kind": "numeric"} for c in COLUMNS]
    model = ServedModel("digits", 1, lambda frame: [0] * len(frame), schema)
    return serve_in_background(create_app(model))


def _post(url: str, body: bytes, timeout: float = 120):
    import requests

    started = time.perf_counter()
    reply = requests.post(url, data=body, headers={"content-type": "application/json"}, timeout=timeout)
    return reply.status_code, time.perf_counter() - started


def probe_shape_bomb() -> dict:
    server = _server()
    before = _rss_mb()
    body = b'{"inputs":[{"name":"x","shape":[1000000000000,0],"datatype":"FP64","data":[]}]}'
    status, seconds = _post(f"{server.url}/v2/models/digits/infer", body)
    return {"status": status, "seconds": round(seconds, 3), "rss_growth_mb": round(_rss_mb() - before)}


def probe_big_body() -> dict:
    import requests

    server = _server()
    row = "[" + ",".join(["0.123456"] * 64) + "]"
    body = ('{"instances":[' + ",".join([row] * 100_000) + "]}").encode()  # ~56 MB
    before = _rss_mb()
    stalls: list[float] = []
    done = threading.Event()

    def ping() -> None:
        with requests.Session() as session:
            while not done.is_set():
                started = time.perf_counter()
                session.get(f"{server.url}/ping", timeout=120)
                stalls.append(time.perf_counter() - started)
                time.sleep(0.05)

    def measured(payload: bytes) -> tuple[int, float, float]:
        """(status, seconds, the longest /ping answered meanwhile)"""
        done.clear()
        stalls.clear()
        pinger = threading.Thread(target=ping)
        pinger.start()
        time.sleep(0.5)
        status, seconds = _post(f"{server.url}/invocations", payload)
        done.set()
        pinger.join()
        return status, seconds, max(stalls)

    status, seconds, stall = measured(body)
    import gc

    gc.collect()
    kept = _rss_mb() - before
    valid = ('{"instances":[' + ",".join([row] * 12_000) + "]}").encode()  # ~6.7 MB: under the default limit
    tries = [measured(valid) for _ in range(3)]  # the first call also starts the worker thread
    valid_status, valid_seconds, valid_stall = tries[-1][0], min(t[1] for t in tries), max(t[2] for t in tries)
    return {"status": status, "body_mb": round(len(body) / 1e6), "seconds": round(seconds, 2),
            "longest_ping_s": round(stall, 3), "rss_kept_mb": round(kept),
            "valid_6.7MB_best_of_3": {"status": valid_status, "seconds": round(valid_seconds, 2),
                            "longest_ping_s": round(valid_stall, 3)}}


def probe_half_headers() -> dict:
    server = _server()
    port = int(server.url.rsplit(":", 1)[1])
    sockets = []
    for _ in range(1000):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n")
        sockets.append(s)
    time.sleep(15)
    still_open = 0
    for s in sockets:
        s.setblocking(False)
        try:
            still_open += s.recv(1) != b""
        except BlockingIOError:  # nothing to read and not closed: open
            still_open += 1
        except OSError:
            pass
        s.close()
    return {"connections": len(sockets), "still_open_after_15s": still_open}


def probe_monitor(folder: str) -> dict:
    from jupyter_mlops.serving.monitor import report

    started = time.perf_counter()
    found = report(Path(folder) / "package", Path(folder) / "log", window=1000)
    return {"seconds": round(time.perf_counter() - started, 2), "window_rows": found["window_rows"],
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def probe_cron_preview() -> dict:
    from jupyter_mlops import schedule

    now = time.time()
    started = time.perf_counter()
    if hasattr(schedule, "next_ticks"):
        ticks = schedule.next_ticks("* * * * *", "UTC", now, 5)
    else:  # what the panel's cron endpoint did before
        ticks = schedule.ticks_between("* * * * *", "UTC", now, now + 366 * 86400)[:5]
    return {"seconds": round(time.perf_counter() - started, 4),
            "first_tick_in_s": round(ticks[0] - now) if ticks else None}


# -- the driver -----------------------------------------------------------------------------------------------------
def _log_fixture(folder: Path) -> None:
    """A 72 MB request log of 64-column requests, and the package reference monitor compares it with."""
    package, log = folder / "package", folder / "log"
    package.mkdir(parents=True)
    log.mkdir()
    reference = {"rows": 100, "columns": {c: {"kind": "numeric", "mean": 0.5, "std": 0.3, "missing": False,
                                              "sample": [i / 100 for i in range(100)],
                                              "bin_edges": [i / 10 for i in range(11)],
                                              "bin_fractions": [0.1] * 10} for c in COLUMNS}}
    (package / "reference.json").write_text(json.dumps(reference))
    row = [round(i / 64, 6) for i in range(64)]
    line = json.dumps({"at": 1.0, "variant": "primary", "version": 1, "columns": COLUMNS, "inputs": [row] * 10,
                       "outputs": [0] * 10, "latency_ms": 1.0}) + "\n"
    with open(log / "requests.jsonl", "w") as f:
        f.write(line * (72_000_000 // len(line)))


def _run_probe(tree: Path, name: str, folder: Path) -> dict:
    limit = PROBES[name][1]
    command = [sys.executable, __file__, "--probe", name, "--folder", str(folder)]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=limit, env=env, cwd=tree)
    except subprocess.TimeoutExpired:
        return {"over_limit_s": limit}
    if done.returncode:
        return {"failed": done.stderr.strip().splitlines()[-1][:120] if done.stderr.strip() else done.returncode}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", default="adb2b78", help="the revision to compare with (default: before issue 14)")
    parser.add_argument("--only", nargs="+", choices=sorted(PROBES), help="run only these probes")
    parser.add_argument("--probe", choices=sorted(PROBES))
    parser.add_argument("--folder")
    args = parser.parse_args()
    if args.probe:
        sys.path.insert(0, os.getcwd())
        function = globals()[f"probe_{args.probe}"]
        print(json.dumps(function(args.folder) if args.probe == "monitor" else function()))
        return
    with tempfile.TemporaryDirectory(prefix="mlops-hostile-") as scratch:
        scratch = Path(scratch)
        baseline = scratch / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(baseline), args.baseline],
                       check=True, capture_output=True)
        try:
            _log_fixture(scratch / "monitor")
            for name, (what, _) in PROBES.items():
                if args.only and name not in args.only:
                    continue
                before = _run_probe(baseline, name, scratch / "monitor")
                after = _run_probe(ROOT, name, scratch / "monitor")
                print(f"{what}\n    before ({args.baseline}): {json.dumps(before)}\n    after  (this tree): "
                      f"{json.dumps(after)}", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(baseline)],
                           capture_output=True)


if __name__ == "__main__":
    main()
