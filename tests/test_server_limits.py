"""Issue 14, items 2, 4 and 5: what one client may cost the model server (body size, unfinished headers) and how
much the request log may keep. Real servers on 127.0.0.1, real sockets."""
import json
import socket
import threading

import pandas as pd
import pytest
import requests

from jupyter_mlops.serving import mlflow_scoring
from jupyter_mlops.serving.app import ServedModel, create_app
from jupyter_mlops.serving.limits import ServerLimits, parse_size
from jupyter_mlops.serving.monitor import LogLimits, RequestLog, log_files, read_log, report
from jupyter_mlops.serving.server import serve_in_background

COLUMNS = [f"x{i}" for i in range(8)]


def model() -> ServedModel:
    schema = [{"name": c, "type": "float64", "kind": "numeric"} for c in COLUMNS]
    return ServedModel("sums", 1, lambda frame: frame.sum(axis=1).to_numpy(), schema)


@pytest.fixture
def server(request):
    limits = getattr(request, "param", None) or ServerLimits(max_body=64 * 1024, header_timeout=0.5,
                                                            offload_above=1024)
    running = serve_in_background(create_app(model(), limits=limits))
    yield running
    running.stop()


def rows(n: int) -> list:
    return [[float(i)] * len(COLUMNS) for i in range(n)]


def test_a_body_over_the_limit_is_413_naming_the_limit_and_the_flag(server):
    body = json.dumps({"instances": rows(5000)}).encode()  # ~300 KB against a 64 KiB limit
    reply = requests.post(f"{server.url}/invocations", data=body, headers={"content-type": "application/json"})
    assert reply.status_code == 413, reply.text
    assert f"the body is {len(body):,} bytes" in reply.json()["error"]
    assert "at most 65,536 bytes" in reply.json()["error"] and "--max-body" in reply.json()["error"]

    def chunked():  # no Content-Length: refused once the bytes read pass the limit
        for start in range(0, len(body), 16384):
            yield body[start:start + 16384]

    reply = requests.post(f"{server.url}/v2/models/sums/infer", data=chunked(),
                          headers={"content-type": "application/json"})
    assert reply.status_code == 413 and "over 65,536 bytes" in reply.json()["error"]
    assert requests.get(f"{server.url}/ping").status_code == 200


def test_a_large_valid_body_is_decoded_off_the_event_loop(server, monkeypatch):
    threads = []
    decode = mlflow_scoring.decode_mlflow

    def spying(model, body):
        threads.append(threading.current_thread().name)
        return decode(model, body)

    monkeypatch.setattr(mlflow_scoring, "decode_mlflow", spying)
    small = requests.post(f"{server.url}/invocations", json={"instances": rows(2)})
    large = requests.post(f"{server.url}/invocations", json={"instances": rows(500)})  # ~23 KB: over offload_above
    assert small.json() == {"predictions": [0.0, 8.0]}
    assert large.status_code == 200 and large.json()["predictions"][499] == 499.0 * 8
    assert threads[0] == "mlops-serve" and threads[1] != "mlops-serve"


def test_connections_that_never_finish_their_headers_are_closed(server):
    port = int(server.url.rsplit(":", 1)[1])
    hanging = []
    for i in range(50):
        s = socket.create_connection(("127.0.0.1", port))
        if i % 2:  # half send the start of a request, half nothing at all
            s.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n")
        hanging.append(s)
    try:
        for s in hanging:
            s.settimeout(10)  # the server's header timeout is 0.5 s
            assert s.recv(100) == b"", "the server kept a connection with unfinished headers open"
    finally:
        for s in hanging:
            s.close()
    # a request whose headers do arrive, on a kept-alive connection, is unaffected
    with requests.Session() as session:
        assert [session.get(f"{server.url}/ping").status_code for _ in range(3)] == [200] * 3


def test_an_answers_head_and_body_go_out_in_one_send():
    """uvicorn writes an answer's head and body separately: two sends and, with Nagle off, two TCP segments per
    answer. The connection's transport holds a write back until the next one (then both go in one vectored
    send) or the end of the event loop's turn (a lone head: HEAD, 204), and never after a close."""
    import asyncio

    from jupyter_mlops.serving.limits import _OneSendAnswers

    class Recording:
        def __init__(self):
            self.calls = []

        def write(self, data):
            self.calls.append(("write", data))

        def writelines(self, chunks):
            self.calls.append(("writelines", tuple(chunks)))

        def close(self):
            self.calls.append(("close",))

        def is_closing(self):
            return False

        def get_extra_info(self, name):
            return f"extra {name}"

    async def scenario():
        loop = asyncio.get_running_loop()
        answers = []
        for steps in (["head", "body"], ["head"], ["head", "close"], ["head", "body", "more"]):
            transport = Recording()
            wrapped = _OneSendAnswers(transport, loop)
            for step in steps:
                wrapped.close() if step == "close" else wrapped.write(step.encode())
            during = list(transport.calls)
            await asyncio.sleep(0)  # the end of this turn of the loop
            answers.append((during, transport.calls, wrapped.get_extra_info("peername")))
        return answers

    (both, _, extra), (lone_during, lone_after, _), (_, closed, _), (_, streamed, _) = asyncio.run(scenario())
    assert both == [("writelines", (b"head", b"body"))] and extra == "extra peername"
    assert lone_during == [] and lone_after == [("write", b"head")]
    assert closed == [("write", b"head"), ("close",)]
    assert streamed == [("writelines", (b"head", b"body")), ("write", b"more")]


def test_limits_are_checked_and_sizes_read_as_people_write_them():
    assert parse_size("8MiB") == 8 * 1024 * 1024 and parse_size("512k") == 512 * 1024 and parse_size("100") == 100
    with pytest.raises(ValueError, match="not a size"):
        parse_size("12QB")
    with pytest.raises(ValueError, match="--max-body"):
        ServerLimits(max_body=0)


def test_cli_refuses_a_bad_limit_naming_the_flag(tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", "serve", "m", "--max-body", "lots",
                           "--workspace", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 2 and "--max-body: not a size: 'lots'" in done.stderr


def frame(n: int, start: int = 0) -> pd.DataFrame:
    return pd.DataFrame([[float(start + i)] * len(COLUMNS) for i in range(n)], columns=COLUMNS)


def test_request_log_rotates_by_size_and_caps_one_request(tmp_path):
    limits = LogLimits(max_bytes=20_000, keep=2, max_request=2_000)
    log = RequestLog(tmp_path, limits=limits)
    for i in range(300):
        log.put("primary", 1, frame(1, i), [i], 0.001)
    log.put("primary", 1, frame(1000), list(range(1000)), 0.001)  # ~60 KB as one line
    log.close()
    files = log_files(tmp_path)
    assert [f.name for f in files] == ["requests.jsonl", "requests.jsonl.1", "requests.jsonl.2"]
    assert all(f.stat().st_size <= limits.max_bytes for f in files)
    lines = [line for f in files for line in f.read_text().splitlines()]
    assert max(len(line) for line in lines) <= limits.max_request
    newest = read_log(tmp_path, limit=1)[0]
    assert newest["truncated"] and newest["rows"] == 1000 and 0 < len(newest["inputs"]) < 1000
    assert newest["inputs"][0] == [0.0] * len(COLUMNS)


def test_monitor_reads_the_recent_window_across_rotated_files(tmp_path):
    log = RequestLog(tmp_path / "log", limits=LogLimits(max_bytes=5_000, keep=3, max_request=1_000))
    for i in range(120):
        log.put("primary", 1, frame(2, 2 * i), [0, 0], 0.002)
    log.close()
    (tmp_path / "log" / "requests.jsonl").open("a").write('{"at": 1, "cut by a cra')  # a crash mid-line
    reference = {"rows": 10, "columns": {c: {"kind": "numeric", "mean": 100.0, "std": 50.0, "sample": [1.0, 200.0],
                                             "bin_edges": [0.0, 120.0, 240.0], "bin_fractions": [0.5, 0.5]}
                                         for c in COLUMNS}}
    package = tmp_path / "package"
    package.mkdir()
    (package / "reference.json").write_text(json.dumps(reference))
    found = report(package, tmp_path / "log", window=30)
    kept = sum(1 for f in log_files(tmp_path / "log") for _ in f.open())
    assert found["window_rows"] == 30 and found["requests"] == kept - 1 < 120
    newest = read_log(tmp_path / "log", limit=15)
    assert newest[-1]["inputs"][-1][0] == 239.0 and len(newest) == 15


def test_request_counts_follow_appends_and_rotations(tmp_path):
    """The panel counts requests on every poll: counts are kept per file and follow what is appended or rotated."""
    from jupyter_mlops.serving.monitor import count_requests

    limits = LogLimits(max_bytes=4_000, keep=2, max_request=1_000)
    log = RequestLog(tmp_path, limits=limits)
    for i in range(10):
        log.put("primary", 1, frame(1, i), [i], 0.001)
    log.close()
    assert count_requests(tmp_path) == 10
    log = RequestLog(tmp_path, limits=limits)  # appends to the same file, then rotates it away
    for i in range(60):
        log.put("primary", 1, frame(1, i), [i], 0.001)
    log.close()
    kept = sum(len(f.read_text().splitlines()) for f in log_files(tmp_path))
    assert count_requests(tmp_path) == kept and 10 < kept < 70
