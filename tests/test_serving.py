"""The model server over real HTTP on 127.0.0.1: both protocols, client mistakes, fuzzed bodies, a bounded load."""
import json
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests
from sklearn.datasets import load_digits

from jupyter_mlops.serving.app import create_app
from jupyter_mlops.serving.server import load, serve_in_background
from jupyter_mlops.workspace import Workspace

from conftest import register_digits

DIGITS = load_digits()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serving")
    register_digits(folder)
    ws = folder / ".mlops"
    model = load(Workspace(ws), "digits@production")
    server = serve_in_background(create_app(model))
    yield server.url, model, ws
    server.stop()


def test_open_inference_protocol(served):
    url, model, _ = served
    assert requests.get(f"{url}/v2/health/live").json() == {"live": True}
    assert requests.get(f"{url}/v2/health/ready").status_code == 200
    meta = requests.get(f"{url}/v2/models/digits").json()
    assert meta["name"] == "digits" and meta["versions"] == ["1"] and len(meta["inputs"]) == 64
    tensor = {"inputs": [{"name": "pixels", "shape": [3, 64], "datatype": "FP64", "data": DIGITS.data[:3].tolist()}],
              "id": "req-1"}
    reply = requests.post(f"{url}/v2/models/digits/infer", json=tensor)
    assert reply.status_code == 200 and reply.headers["x-mlops-variant"] == "primary"
    body = reply.json()
    assert body["id"] == "req-1" and body["model_version"] == "1"
    assert body["outputs"][0]["data"] == DIGITS.target[:3].tolist() and body["outputs"][0]["shape"] == [3]
    columns = {"inputs": [{"name": c, "shape": [2], "datatype": "FP64", "data": DIGITS.data[:2, i].tolist()}
                          for i, c in enumerate(model.columns)]}
    assert requests.post(f"{url}/v2/models/digits/infer", json=columns).json()["outputs"][0]["data"] == [0, 1]


def test_mlflow_formats(served):
    url, model, _ = served
    rows = DIGITS.data[:4].tolist()
    expected = DIGITS.target[:4].tolist()
    for body in ({"dataframe_split": {"columns": model.columns, "data": rows}},
                 {"dataframe_records": [dict(zip(model.columns, r)) for r in rows]},
                 {"instances": rows},
                 {"inputs": rows},
                 {"inputs": {c: [r[i] for r in rows] for i, c in enumerate(model.columns)}}):
        reply = requests.post(f"{url}/invocations", json=body)
        assert reply.status_code == 200, (body.keys(), reply.text)
        assert reply.json() == {"predictions": expected}
    assert requests.get(f"{url}/ping").status_code == 200


@pytest.mark.parametrize("path, body, status, words", [
    ("/invocations", b"{not json", 400, "not valid JSON"),
    ("/invocations", {"instances": [[1, 2, 3]]}, 400, "64 values per row"),
    ("/invocations", {"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]]}}, 400, "missing column"),
    ("/invocations", {"instances": [["x"] * 64]}, 400, "must be numeric"),
    ("/invocations", {"instances": [[None] * 64]}, 400, "missing or infinite"),
    ("/invocations", {"rows": []}, 400, "dataframe_split"),
    ("/invocations", [1, 2], 400, "JSON object"),
    ("/v2/models/digits/infer", {"inputs": [{"name": "x", "shape": [2, 64], "datatype": "FP64", "data": [1]}]}, 400,
     "holds 128 values"),
    ("/v2/models/digits/infer", {"inputs": [{"name": "x"}]}, 400, '"shape"'),
    ("/v2/models/digits/infer", {}, 400, '"inputs"'),
    ("/v2/models/cats/infer", {"inputs": []}, 404, "serves `digits`"),
    # issue 14's shape bomb (88 bytes that built 10**12 empty rows) and an input name that is a list
    ("/v2/models/digits/infer", {"inputs": [{"name": "x", "shape": [1000000000000, 0], "datatype": "FP64",
                                             "data": []}]}, 400, "sizes of at least 1"),
    ("/v2/models/digits/infer", {"inputs": [{"name": ["x"], "shape": [1], "datatype": "FP64", "data": [1]}]}, 400,
     '"name" must be a string'),
    ("/invocations", {"dataframe_split": {"columns": [[1]], "data": [[1]]}}, 400, "list of names (strings)"),
    # found by the fuzzer (test_serving_fuzz.py): a datatype that is a list was a TypeError, a 500
    ("/v2/models/digits/infer", {"inputs": [{"name": "a", "shape": [1], "datatype": [], "data": [1]}]}, 400,
     "unknown datatype"),
])
def test_client_mistakes_are_4xx_naming_the_problem(served, path, body, status, words):
    url, _, _ = served
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    reply = requests.post(url + path, data=data, headers={"content-type": "application/json"})
    assert reply.status_code == status and words in reply.json()["error"], reply.text


def test_deeply_nested_json_is_a_400_with_the_standard_librarys_decoder(served, monkeypatch):
    from starlette.testclient import TestClient

    from jupyter_mlops.serving import frames

    _, model, _ = served
    monkeypatch.setattr(frames, "json_loader", lambda: json.loads)  # as where orjson is not installed
    with TestClient(create_app(model)) as client:
        reply = client.post("/invocations", content=b'{"instances": ' + b"[" * 100000 + b"]" * 100000 + b"}",
                            headers={"content-type": "application/json"})
    assert reply.status_code == 400 and "nested too deeply" in reply.json()["error"]


def test_wrong_content_type_is_415(served):
    url, _, _ = served
    reply = requests.post(f"{url}/invocations", data="a b\n1 2", headers={"content-type": "text/plain"})
    assert reply.status_code == 415 and "application/json or text/csv" in reply.json()["error"]


def test_mlflow_csv_health_and_version(served):
    """MLflow's documented CSV body (a header row, as `pandas.DataFrame.to_csv` writes it), and the scoring
    server's /health and /version."""
    import pandas as pd

    url, model, _ = served
    table = pd.DataFrame(DIGITS.data[:3], columns=model.columns)
    reply = requests.post(f"{url}/invocations", data=table.to_csv(index=False), headers={"content-type": "text/csv"})
    assert reply.status_code == 200 and reply.json() == {"predictions": DIGITS.target[:3].tolist()}, reply.text
    wrong = requests.post(f"{url}/invocations", data="a,b\n1,2", headers={"content-type": "text/csv; charset=utf-8"})
    assert wrong.status_code == 400 and "missing column" in wrong.json()["error"]
    assert requests.get(f"{url}/health").status_code == 200
    version = requests.get(f"{url}/version")
    assert version.status_code == 200 and version.text.startswith("jupyter-mlops ")


def test_tritonclient_as_it_comes(served):
    """The official client, unmodified: binary tensor data by default, server metadata, versioned routes."""
    import numpy as np
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    url, model, _ = served
    client = triton.InferenceServerClient(url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    assert client.is_model_ready("digits") and client.is_model_ready("digits", "1")
    assert not client.is_model_ready("digits", "7")
    meta = client.get_model_metadata("digits", "1")
    assert meta["outputs"] == [{"name": "predict", "datatype": "INT64", "shape": [-1]}]  # what infer returns
    for binary_in in (True, False):
        pixels = triton.InferInput("pixels", [4, 64], "FP32")
        pixels.set_data_from_numpy(DIGITS.data[:4].astype(np.float32), binary_data=binary_in)
        for outputs in (None, [triton.InferRequestedOutput("predict", binary_data=False)],
                        [triton.InferRequestedOutput("predict", binary_data=True)]):
            result = client.infer("digits", [pixels], model_version="1", outputs=outputs)
            assert result.as_numpy("predict").tolist() == DIGITS.target[:4].tolist(), (binary_in, outputs)
    with pytest.raises(InferenceServerException, match="no version 7 deployed here; deployed: 1 \\(primary\\)"):
        client.infer("digits", [pixels], model_version="7")
    with pytest.raises(InferenceServerException, match="no output `probabilities`"):
        client.infer("digits", [pixels], outputs=[triton.InferRequestedOutput("probabilities")])
    assert client.get_model_repository_index() == [{"name": "digits", "version": "1", "state": "READY"}]


def test_statistics_extension_through_tritonclient(served):
    """Inference statistics as tritonclient reads them: rows predicted, requests by outcome with their time, and
    predict calls; health and metadata requests are not inferences."""
    import numpy as np
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    url, _, _ = served
    client = triton.InferenceServerClient(url.removeprefix("http://"))
    assert "statistics" in client.get_server_metadata()["extensions"]

    def stats() -> dict:
        [one] = client.get_inference_statistics("digits", "1")["model_stats"]
        return one

    before = stats()
    pixels = triton.InferInput("pixels", [3, 64], "FP64")
    pixels.set_data_from_numpy(DIGITS.data[:3])
    for _ in range(4):
        client.infer("digits", [pixels])
        client.is_model_ready("digits")  # not an inference
    with pytest.raises(InferenceServerException):
        client.infer("digits", [triton.InferInput("pixels", [1, 3], "FP64").set_data_from_numpy(np.zeros((1, 3)))])
    after = stats()
    assert after["name"] == "digits" and after["version"] == "1"
    assert after["inference_count"] - before["inference_count"] == 12
    success, fail = (after["inference_stats"][k]["count"] - before["inference_stats"][k]["count"]
                     for k in ("success", "fail"))
    assert (success, fail) == (4, 1)
    assert after["inference_stats"]["success"]["ns"] > before["inference_stats"]["success"]["ns"]
    assert 1 <= after["execution_count"] - before["execution_count"] <= 4
    assert after["inference_stats"]["compute_infer"]["count"] == after["execution_count"]
    assert abs(after["last_inference"] / 1000 - time.time()) < 60
    assert client.get_inference_statistics()["model_stats"][0]["inference_count"] == after["inference_count"]
    assert requests.get(f"{url}/v2/models/cats/stats").status_code == 404


def test_binary_tensors_sent_wrong_are_4xx(served):
    url, _, _ = served
    header = json.dumps({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP64",
                                     "parameters": {"binary_data_size": 64 * 8}}]}).encode()
    for extra, length, words in ((b"\0" * 100, len(header), "not within"), (b"\0" * 512, 10 ** 6, "JSON header"),
                                 (b"\0" * 520, len(header), "belong to no input")):
        reply = requests.post(f"{url}/v2/models/digits/infer", data=header + extra,
                              headers={"Inference-Header-Content-Length": str(length)})
        assert reply.status_code == 400 and words in reply.json()["error"], reply.text


def test_a_request_for_an_unknown_model_is_not_counted_as_the_served_one(served):
    url, _, _ = served

    def counted() -> dict:
        lines = [line for line in requests.get(f"{url}/metrics").text.splitlines()
                 if line.startswith("mlops_requests_total{") and 'code="404"' in line]
        return {line.split('model="')[1].split('"')[0]: float(line.split()[-1]) for line in lines}

    before = counted()
    assert requests.post(f"{url}/v2/models/cats/infer", json={"inputs": []}).status_code == 404
    after = counted()
    assert after.get("digits") == before.get("digits") and after["(unknown)"] == before.get("(unknown)", 0) + 1


def test_bounded_load_has_no_errors_and_is_counted(served):
    url, _, _ = served
    body = json.dumps({"instances": DIGITS.data[:1].tolist()})
    failures: list = []

    def client() -> None:
        with requests.Session() as session:
            for _ in range(50):
                reply = session.post(f"{url}/invocations", data=body, headers={"content-type": "application/json"},
                                     timeout=30)
                if reply.status_code != 200 or reply.json() != {"predictions": [0]}:
                    failures.append(reply.text)

    threads = [threading.Thread(target=client) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert failures == []
    metrics = requests.get(f"{url}/metrics").text
    count = next(float(line.split()[-1]) for line in metrics.splitlines()
                 if line.startswith('mlops_requests_total{code="200",model="digits"'))
    assert count >= 500
    assert "mlops_predict_seconds_bucket" in metrics and "mlops_requests_in_flight" in metrics


def test_cli_serve(served):
    _, _, ws = served
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "jupyter_mlops.cli", "serve", "digits:1", "--port", str(port),
                             "--workspace", str(ws)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        reply = requests.post(f"http://127.0.0.1:{port}/invocations", json={"instances": DIGITS.data[:2].tolist()})
        assert reply.json() == {"predictions": [0, 1]}
    finally:
        proc.terminate()
        proc.wait(30)


def test_concurrent_requests_batched_together_each_get_their_own_answer(served):
    """Requests arriving while a prediction runs are predicted in one call: no answer may be another's."""
    url, model, _ = served
    expected = model.predict(DIGITS.data[:210].tolist())
    answers: dict[int, list] = {}

    def client(start: int) -> None:
        with requests.Session() as session:
            for i in range(start, 200, 8):
                rows = DIGITS.data[i:i + 1 + i % 3].tolist()  # one to three rows per request
                reply = session.post(f"{url}/invocations", json={"instances": rows}, timeout=30)
                answers[i] = reply.json()["predictions"]

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(answers) == 200
    for i, values in answers.items():
        assert values == expected[i:i + 1 + i % 3], i


def test_one_request_breaking_a_batch_fails_alone():
    from jupyter_mlops.serving.app import ServedModel

    def predict(frame):
        if (frame["x"] == 13).any():
            raise ValueError("13 is unlucky")
        return (frame["x"] * 2).tolist()

    model = ServedModel("toy", 1, predict, [{"name": "x", "type": "float64", "kind": "numeric"}])
    server = serve_in_background(create_app(model))
    try:
        results: dict[int, requests.Response] = {}

        def client(x: int) -> None:
            results[x] = requests.post(f"{server.url}/invocations", json={"instances": [[x]]}, timeout=30)

        threads = [threading.Thread(target=client, args=(x,)) for x in range(10, 20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert results[13].status_code == 500 and "unlucky" in results[13].json()["error"]
        assert all(results[x].json() == {"predictions": [2.0 * x]} for x in range(10, 20) if x != 13)
    finally:
        server.stop()


def test_requests_waiting_together_are_predicted_in_one_call():
    import asyncio

    import httpx

    from jupyter_mlops.serving.app import ServedModel

    calls: list[int] = []

    def predict(frame):
        calls.append(len(frame))
        return (frame["x"] * 2).tolist()

    app = create_app(ServedModel("toy", 1, predict, [{"name": "x", "type": "float64", "kind": "numeric"}]))

    async def burst() -> list:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://toy") as client:
            return await asyncio.gather(*(client.post("/invocations", json={"instances": [[x], [x + 0.5]]})
                                          for x in range(20)))

    replies = asyncio.run(burst())
    assert [r.json()["predictions"] for r in replies] == [[2.0 * x, 2.0 * x + 1] for x in range(20)]
    assert sum(calls) == 40 and len(calls) < 20  # fewer predict calls than requests: they were batched


def test_requests_that_arrive_together_over_http_are_predicted_in_one_call():
    """Eight requests whose bytes all arrive while a prediction holds the event loop are predicted together once
    it is free. Predicting one turn of the loop after the first of them came split them (a request needs a second
    turn to reach the batch), and a batch of ten clients averaged four requests."""
    import socket
    import time

    from jupyter_mlops.serving.app import ServedModel

    calls: list[int] = []

    def predict(frame):
        calls.append(len(frame))
        if len(calls) == 1:
            time.sleep(1.0)  # holds the event loop: the others arrive meanwhile
        return (frame["x"] * 2).tolist()

    server = serve_in_background(create_app(ServedModel("toy", 1, predict, [
        {"name": "x", "type": "float64", "kind": "numeric"}])))
    host, port = server.url.removeprefix("http://").split(":")

    def request(x: int) -> bytes:
        body = json.dumps({"instances": [[x]]}).encode()
        return (f"POST /invocations HTTP/1.1\r\nHost: toy\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    try:
        first = socket.create_connection((host, int(port)))
        first.sendall(request(0))
        while not calls:
            time.sleep(0.01)
        others = [socket.create_connection((host, int(port))) for _ in range(8)]
        for x, conn in enumerate(others, 1):
            conn.sendall(request(x))
        answers = [conn.recv(65536) for conn in [first, *others]]
        assert all(b" 200 OK" in a for a in answers)
        assert calls == [1, 8]
    finally:
        for conn in [first, *others]:
            conn.close()
        server.stop()


def test_large_json_tensors_are_read_as_arrays_and_answered_as_orjson_would(served, monkeypatch):
    """From 4 KB of JSON, each numeric input's data is read by simdjson straight into one float array (no Python
    float per value: 3.5x quicker on 1,000 rows of 13). Every answer, right or a mistake, is the one the plain reading
    gives."""
    from jupyter_mlops.serving import frames, oip

    url, model, _ = served
    rows = DIGITS.data[:60].tolist()
    with_null = [list(r) for r in rows]
    with_null[7][5] = None
    with_text = [list(r) for r in rows]
    with_text[3][2] = "dark"

    def tensor(data, shape=(60, 64), datatype="FP64", **extra):
        return {"id": "big", "inputs": [{"name": "pixels", "shape": list(shape), "datatype": datatype, "data": data}],
                **extra}

    bodies = [tensor(rows), tensor(DIGITS.data[:60].astype(int).tolist(), datatype="INT64"),
              tensor(rows, outputs=[{"name": "predict", "parameters": {"binary_data": False}}]),
              tensor(with_null), tensor(with_text), tensor(rows[:59] + [rows[59][:10]]), tensor(rows, shape=(64, 60)),
              tensor(DIGITS.data[:60].ravel().tolist()),  # flat data, shaped by "shape"
              {"id": "big", "inputs": [{"name": c, "shape": [60], "datatype": "FP32",
                                        "data": DIGITS.data[:60, i].tolist()} for i, c in enumerate(model.columns)]},
              tensor([[bool(v) for v in r] for r in rows], datatype="BOOL"),
              tensor(rows, outputs=[{"name": "nope"}])]
    raws = [json.dumps(b).encode() for b in bodies] + [json.dumps(tensor(rows)).encode()[:-40]]  # cut short
    assert all(len(raw) >= frames.ARRAYS_FROM for raw in raws)
    parsed = oip.parse_oip(None, raws[0], {})
    assert type(parsed["inputs"][0]["data"]).__name__ == "ndarray" and parsed["id"] == "big"
    assert oip.parse_oip(None, raws[1], {})["inputs"][0]["data"].dtype.kind == "i"  # INT64 stays ints, as sent

    def answers():
        out = []
        for raw in raws:
            reply = requests.post(f"{url}/v2/models/digits/infer", data=raw, headers={"content-type":
                                                                                      "application/json"})
            out.append((reply.status_code, reply.json()))
        return out

    quick = answers()
    assert quick[0][0] == 200 and len(quick[0][1]["outputs"][0]["data"]) == 60
    assert [status for status, _ in quick] == [200, 200, 200, 400, 400, 400, 400, 200, 200, 200, 400, 400]
    monkeypatch.setattr(frames, "ARRAYS_FROM", 10 ** 12)  # every body read by orjson, as before
    assert answers() == quick


def test_predict_may_change_its_frame_in_place_whatever_the_body_format():
    """A predict that cleans its input in place, as notebooks do (`frame.loc[...] = `, `fillna(inplace=True)`), works
    whatever the body's format: rows read straight from the body's bytes (tritonclient's binary tensors, large JSON
    through simdjson) are in a read-only buffer, and a frame over it would answer 500 "assignment destination is
    read-only"."""
    import numpy as np
    import tritonclient.http as triton

    from jupyter_mlops.serving.app import ServedModel

    def predict(frame):
        frame.loc[frame["a"] < 0, "a"] = 0.0  # negative readings are sensor faults
        frame.fillna(0.0, inplace=True)
        return (frame["a"] + frame["b"]).to_numpy()

    model = ServedModel("clip", 1, predict, [{"name": "a", "type": "float64", "kind": "numeric", "nullable": True},
                                             {"name": "b", "type": "float64", "kind": "numeric"}])
    server = serve_in_background(create_app(model))
    try:
        rows = np.array([[-1.0, 2.0], [3.0, 4.0]] * 300)
        expected = [2.0, 7.0] * 300
        client = triton.InferenceServerClient(server.url.removeprefix("http://"))
        tensor = triton.InferInput("x", [600, 2], "FP64")
        tensor.set_data_from_numpy(rows, binary_data=True)
        assert client.infer("clip", [tensor]).as_numpy("predict").tolist() == expected
        body = {"inputs": [{"name": "x", "shape": [600, 2], "datatype": "FP64", "data": rows.tolist()}]}
        reply = requests.post(f"{server.url}/v2/models/clip/infer", json=body)
        assert reply.status_code == 200 and reply.json()["outputs"][0]["data"] == expected, reply.text
        reply = requests.post(f"{server.url}/invocations", json={"inputs": [[None, 1.0], [-5.0, 2.0]]})
        assert reply.json() == {"predictions": [1.0, 2.0]}, reply.text
    finally:
        server.stop()


def test_large_mlflow_json_rows_are_read_as_arrays_and_answered_as_orjson_would(served, monkeypatch):
    """The same for MLflow's formats: from 4 KB, a numeric model's rows (`instances`, `inputs`, `dataframe_split`)
    are read by simdjson into one array, and every answer, right or a mistake, is the one the plain reading gives
    (other column orders, nulls, text, ragged rows, an array within a row, a "[" in a string take the plain way)."""
    from jupyter_mlops.serving import frames, mlflow_scoring

    url, model, _ = served
    rows = DIGITS.data[:60].tolist()
    with_null, with_text, nested = [list(r) for r in rows], [list(r) for r in rows], [list(r) for r in rows]
    with_null[7][5], with_text[3][2], nested[9][4] = None, "dark[er]", [nested[9][4]]
    reordered = list(reversed(model.columns))
    bodies = [{"instances": rows}, {"inputs": rows}, {"dataframe_split": {"columns": model.columns, "data": rows}},
              {"dataframe_split": {"data": rows}},
              {"dataframe_split": {"columns": reordered, "data": [list(reversed(r)) for r in rows]}},
              {"dataframe_split": {"columns": model.columns, "data": rows, "index": list(range(60))}},
              {"instances": with_null}, {"instances": with_text}, {"instances": nested},
              {"instances": rows[:59] + [rows[59][:10]]}, {"inputs": rows, "params": {"a": [1]}},
              {"inputs": rows, "instances": rows}, {"instances": DIGITS.data[0].tolist() * 30},
              {"dataframe_split": {"columns": model.columns[:10], "data": DIGITS.data[:300, :10].tolist()}},
              {"inputs": [r + [0.0] for r in rows]},
              {"instances": [rows[0] + [1.0]] + [rows[1][:-1]] + rows[2:]},  # ragged, the right number of values
              {"instances": ["x" * len(model.columns)] * 80},  # rows of text as long as a row
              {"instances": [dict(zip(model.columns, r)) for r in rows]},  # rows as objects: MLflow takes them
              {"inputs": [float(i) for i in range(len(model.columns) * 60)]}]  # numbers, no rows
    raws = [json.dumps(b).encode() for b in bodies] + [json.dumps({"inputs": rows}).encode()[:-30]]
    assert all(len(raw) >= frames.ARRAYS_FROM for raw in raws)
    assert type(mlflow_scoring.parse_json(None, raws[0], model)["instances"]).__name__ == "ndarray"

    def answers():
        out = []
        for raw in raws:
            reply = requests.post(f"{url}/invocations", data=raw, headers={"content-type": "application/json"})
            out.append((reply.status_code, reply.json()))
        return out

    quick = answers()
    assert [status for status, _ in quick] == [200] * 6 + [400] * 4 + [200] + [400] * 6 + [200, 400, 400], quick
    monkeypatch.setattr(frames, "ARRAYS_FROM", 10 ** 12)  # every body read by orjson, as before
    assert answers() == quick


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_predict_returning_a_list_of_numpy_values_is_answered(kind):
    """`list(model.predict(frame))` and `[model.predict(row)[0] for ...]`, common in notebooks' serve cells, give
    numpy scalars, which JSON writers refuse: every request was answered 500 "not JSON serializable". They are
    answered as the array itself would be, in both protocols and as tritonclient reads binary outputs."""
    import numpy as np
    import tritonclient.http as triton
    from sklearn.linear_model import LinearRegression, LogisticRegression

    from jupyter_mlops.serving.app import ServedModel

    X = np.array([[0.0, 1.0], [1.0, 0.0], [0.2, 0.9], [0.9, 0.1]])
    fitted = (LogisticRegression() if kind == "classifier" else LinearRegression()).fit(X, [0, 1, 0, 1])

    def predict(frame):
        return [fitted.predict(frame.iloc[[i]].to_numpy())[0] for i in range(len(frame))]

    model = ServedModel("listed", 1, predict, [{"name": "a", "type": "float64", "kind": "numeric"},
                                               {"name": "b", "type": "float64", "kind": "numeric"}])
    expected = fitted.predict(X).tolist()
    server = serve_in_background(create_app(model))
    try:
        reply = requests.post(f"{server.url}/invocations", json={"inputs": X.tolist()})
        assert reply.status_code == 200 and reply.json() == {"predictions": expected}, reply.text
        body = {"inputs": [{"name": "x", "shape": [4, 2], "datatype": "FP64", "data": X.ravel().tolist()}]}
        reply = requests.post(f"{server.url}/v2/models/listed/infer", json=body)
        assert reply.status_code == 200, reply.text
        output = reply.json()["outputs"][0]
        assert output["data"] == expected and output["datatype"] == ("INT64" if kind == "classifier" else "FP64")
        client = triton.InferenceServerClient(server.url.removeprefix("http://"))
        tensor = triton.InferInput("x", [4, 2], "FP64")
        tensor.set_data_from_numpy(X, binary_data=True)
        answer = client.infer("listed", [tensor], outputs=[triton.InferRequestedOutput("predict", binary_data=True)])
        assert answer.as_numpy("predict").tolist() == expected
    finally:
        server.stop()
