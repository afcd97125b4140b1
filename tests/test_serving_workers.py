"""A model server of several worker processes (`--workers N`): one port, one set of metrics, one shadow report,
every worker's request log read as one, supervised, and stopped as a whole; and no Nagle delay on a socket bound
before the server starts."""
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from sklearn.datasets import load_digits

import jupyter_mlops
from jupyter_mlops.serving.app import create_app
from jupyter_mlops.serving.monitor import RequestLog, count_requests, log_name, read_log
from jupyter_mlops.serving.server import _server, load
from jupyter_mlops.workspace import Workspace

from conftest import free_port, register_digits

DIGITS = load_digits()


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    folder = tmp_path_factory.mktemp("workers")
    register_digits(folder, ("5", "0.05"))
    return Workspace(folder / ".mlops")


def _children(pid: int) -> set[int]:
    """The worker processes of a server group (not multiprocessing's resource tracker)."""
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"resource_tracker" not in cmdline:
                found.add(int(child))
    return found


def _wait(condition, timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _ready(url: str) -> bool:
    try:
        return requests.get(f"{url}/v2/health/ready", timeout=1).status_code == 200
    except requests.RequestException:  # refused, or (workers still loading the model) not answered yet
        return False


def _requests_counted(url: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("mlops_requests_total{") and 'code="200"' in line)


def test_two_workers_serve_one_deployment_as_one_server(versions, tmp_path):
    port = free_port()
    output = open(tmp_path / "deploy.log", "w+")
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "jupyter_mlops.cli", "deploy", "digits", "--workers", "2",
                             "--shadow", "2", "--port", str(port), "--workspace", str(versions.root)],
                            stderr=output, text=True)
    logs = versions.root / "logs" / "digits"
    sent = 0
    try:
        _wait(lambda: _ready(url), what="the server")
        workers = _children(proc.pid)
        assert len(workers) == 2, workers
        checks = _requests_counted(url)  # the readiness checks answered so far (counted, neither logged nor mirrored)

        def both_logs_written() -> bool:  # a new connection each time: either worker may accept it
            nonlocal sent
            assert requests.post(f"{url}/invocations", json={"instances": DIGITS.data[:2].tolist()}).ok
            sent += 1
            return all(any(logs.glob(log_name(i))) and (logs / log_name(i)).stat().st_size for i in (0, 1))

        _wait(both_logs_written, what="both workers to answer")
        with requests.Session() as session:  # and concurrently, on kept-alive connections
            threads = [threading.Thread(target=lambda: [session.post(
                f"{url}/invocations", json={"instances": DIGITS.data[:2].tolist()}) for _ in range(10)])
                for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        sent += 40

        # one /metrics for the group, whichever worker answers it
        _wait(lambda: _requests_counted(url) == checks + sent, 10, f"/metrics to count {checks + sent} requests")
        [stats] = requests.get(f"{url}/v2/models/digits/versions/1/stats").json()["model_stats"]
        assert stats["inference_count"] == 2 * sent and stats["inference_stats"]["success"]["count"] == sent
        # one shadow report: every worker's mirrored rows (each saves its report at most once a second)
        _wait(lambda: requests.get(f"{url}/v2/shadow").json()["rows"] == 2 * sent, 20, "the shadow report")

        # a worker that dies is replaced, and the port keeps answering
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        _wait(lambda: len(_children(proc.pid)) == 2 and victim not in _children(proc.pid), what="a new worker")
        _wait(lambda: _ready(url), what="the server after a worker died")
        for _ in range(5):
            assert requests.post(f"{url}/invocations", json={"instances": DIGITS.data[:2].tolist()}).ok
        sent += 5
        survivors = _children(proc.pid)

        # undeploy stops the whole group: the workers finish and write their logs, and the parent ends
        done = jupyter_mlops.undeploy("digits", workspace=versions.root)
        assert done["status"] == "stopped" and f"pid {proc.pid}" in done["lines"][0]
        proc.wait(30)
        assert proc.returncode == 0, (tmp_path / "deploy.log").read_text()
        assert not [pid for pid in survivors | workers if Path(f"/proc/{pid}").exists()
                    and b"Z" not in Path(f"/proc/{pid}/stat").read_bytes().split(b")")[1][:3]]
        # the killed worker could not write what it still held; everything the others answered is logged
        assert sent - 45 <= count_requests(logs) <= sent
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)


def test_every_workers_log_is_read_as_one(tmp_path):
    """Each worker writes its own log; the readers merge them newest first, by the time of each request."""
    import pandas as pd

    logs = [RequestLog(tmp_path, name=log_name(i)) for i in (0, 1)]
    for n in range(6):  # alternate workers, one request each
        frame = pd.DataFrame([[float(n)]], columns=["x"])
        logs[n % 2].put("primary", 1, frame, [n], 0.001)
        time.sleep(0.002)
    for log in logs:
        log.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["requests-1.jsonl", "requests.jsonl"]
    assert count_requests(tmp_path) == 6
    assert [r["outputs"] for r in read_log(tmp_path)] == [[n] for n in range(6)]
    assert [r["outputs"] for r in read_log(tmp_path, limit=3)] == [[3], [4], [5]]


def test_a_connection_on_a_socket_bound_before_the_server_gets_no_nagle_delay(versions):
    """A listening socket bound with proto 0 (as uvicorn's --workers binds it) gives asyncio accepted sockets it
    does not recognise as TCP: it leaves Nagle's algorithm on, and each keep-alive answer waited ~40 ms for the
    client's delayed ACK. Our protocol turns it off itself."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    server = _server(create_app(load(versions, "digits")))
    server.config.loop = "asyncio"  # uvloop sets TCP_NODELAY either way
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        _wait(lambda: server.started, 30, "the server")
        with requests.Session() as session:
            assert session.get(f"{url}/ping").status_code == 200
            [connection] = server.server_state.connections
            accepted = connection.transport.get_extra_info("socket")
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        server.should_exit = True
        thread.join(15)
        listener.close()


def test_workers_must_be_a_count_of_processes(versions, capsys):
    from jupyter_mlops.cli import main

    with pytest.raises(SystemExit):
        main(["serve", "digits", "--workers", "0", "--workspace", str(versions.root)])
    assert "--workers: '0': give a number of processes from 1 to 64, or auto" in capsys.readouterr().err
