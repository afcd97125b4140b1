"""Request logging, drift and outliers, on a served model over real HTTP."""
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from sklearn.datasets import load_digits

from jupyter_mlops.serving.app import create_app
from jupyter_mlops.serving.monitor import drift, read_log, report
from jupyter_mlops.serving.server import load, serve_in_background
from jupyter_mlops.workspace import Workspace

from conftest import register_digits

DIGITS = load_digits()


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    folder = tmp_path_factory.mktemp("monitor")
    [version] = register_digits(folder)
    return Workspace(folder / ".mlops"), version


def _send(url, rows, batch=20):
    with requests.Session() as session:
        for i in range(0, len(rows), batch):
            assert session.post(f"{url}/invocations", json={"instances": rows[i:i + batch]}).status_code == 200


def _wait_written(log, count):
    deadline = time.monotonic() + 30
    while log.written < count and time.monotonic() < deadline:
        time.sleep(0.05)


def test_same_distribution_is_not_drift_and_shifted_data_is(registered, tmp_path):
    ws, version = registered
    model = load(ws, "digits")
    rng = np.random.default_rng(0)
    # held-out style traffic: real digits, resampled
    same = DIGITS.data[rng.integers(0, len(DIGITS.data), 600)].tolist()
    shifted = np.clip(DIGITS.data[rng.integers(0, len(DIGITS.data), 600)] + 4, 0, 16)  # brighter, saturated
    for rows, folder, drifted in ((same, tmp_path / "same", False), (shifted.tolist(), tmp_path / "shifted", True)):
        app = create_app(model, log_folder=folder)
        server = serve_in_background(app)
        try:
            _send(server.url, rows)
            _wait_written(app.state.request_log, len(rows) // 20)
            live = requests.get(f"{server.url}/metrics").text  # drift also reaches Prometheus
        finally:
            server.stop()
            app.state.request_log.close()
        found = report(version["package"], folder, window=600)
        assert found["requests"] == 30 and found["window_rows"] == 600
        gauge = next(float(line.split()[-1]) for line in live.splitlines()
                     if line.startswith('mlops_drifted_features{model="digits"'))
        assert (gauge >= 20) if drifted else (gauge == 0)
        assert 'mlops_feature_psi{feature="pixel_10",model="digits"' in live
        if drifted:
            assert len(found["drifted_features"]) >= 20, found["drifted_features"]
        else:
            assert found["drifted_features"] == [], {n: f for n, f in found["features"].items() if f["drifted"]}
    logged = read_log(tmp_path / "same", limit=1)[0]
    assert logged["variant"] == "primary" and len(logged["inputs"]) == 20 and len(logged["outputs"]) == 20


def test_outliers_are_scored_against_the_training_data(registered):
    _, version = registered
    from jupyter_mlops.serving.monitor import outlier_scores

    reference = json.loads((Path(version["package"]) / "reference.json").read_text())
    columns = [f"pixel_{i}" for i in range(64)]
    normal, odd = DIGITS.data[0].tolist(), DIGITS.data[0].tolist()
    odd[10] = 500.0  # a pixel that varies in training (constant ones have no z-score)
    scores = outlier_scores(reference, columns, [normal, odd])
    assert scores[0] < 6 < scores[1]


def _bins(mean, std):
    return {"kind": "numeric", "mean": mean, "std": std, "bin_edges": [mean - 2 * std, mean, mean + 2 * std],
            "bin_fractions": [0.5, 0.5]}


@pytest.mark.parametrize("schema", [
    [("a", "numeric"), ("b", "numeric"), ("flat", "numeric")],
    [("a", "numeric"), ("colour", "categorical"), ("b", "numeric"), ("flat", "numeric")]],
    ids=["numbers", "with-text"])
def test_live_outliers_are_counted_for_every_model(schema, tmp_path):
    """mlops_outliers_total counts the served rows more than 6 deviations from a feature's training mean, for a
    model with a text column too (its numeric columns were once read as floats together with the text, which
    raised, and nothing was ever counted). A feature constant in training has no deviation: it never counts."""
    from jupyter_mlops.serving.app import ServedModel

    reference = {"columns": {"a": _bins(0.0, 1.0), "b": _bins(10.0, 2.0), "flat": _bins(3.0, 0.0),
                             "colour": {"kind": "categorical", "frequencies": {"red": 0.5, "blue": 0.5}}}}
    model = ServedModel("odd", 1, lambda frame: [0] * len(frame),
                        [{"name": n, "type": "float64" if k == "numeric" else "object", "kind": k} for n, k in schema],
                        reference=reference)

    def row(a, b, flat=3.0):
        values = {"a": a, "b": b, "flat": flat, "colour": "red"}
        return {name: values[name] for name, _ in schema}

    rows = [row(0.5, 11.0)] * 20 + [row(6.5, 10.0), row(0.0, -3.0), row(-7.0, 23.0), row(0.0, 10.0, flat=500.0)]
    app = create_app(model, log_folder=tmp_path)
    server = serve_in_background(app)
    try:
        with requests.Session() as session:
            for i in range(0, len(rows), 4):
                answer = session.post(f"{server.url}/invocations", json={"dataframe_records": rows[i:i + 4]})
                assert answer.status_code == 200, answer.text
        _wait_written(app.state.request_log, 6)
        metrics = requests.get(f"{server.url}/metrics").text
    finally:
        server.stop()
        app.state.request_log.close()
    assert 'mlops_outliers_total{model="odd",version="1"} 3.0' in metrics, \
        [line for line in metrics.splitlines() if "outliers" in line]


def test_a_full_log_queue_drops_and_counts_while_requests_succeed(registered, tmp_path, caplog):
    """Dropped records are counted in /metrics and said in the server's log (once here: then at most once a
    minute), so losing them under load does not go unnoticed."""
    ws, _ = registered
    model = load(ws, "digits")
    app = create_app(model, log_folder=tmp_path / "tiny", log_capacity=1)
    log = app.state.request_log
    log._stop.set()  # stop the writer first, so the queue stays full
    log.thread.join(5)
    server = serve_in_background(app)
    try:
        _send(server.url, DIGITS.data[:100].tolist(), batch=1)
        metrics = requests.get(f"{server.url}/metrics").text
    finally:
        server.stop()
    assert log.dropped == 99
    assert "mlops_request_log_dropped_total 99.0" in metrics
    said = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(said) == 1 and "request log" in said[0] and "monitor, live drift and feedback miss" in said[0], said


def test_drift_of_a_categorical_feature():
    reference = {"columns": {"color": {"kind": "categorical", "frequencies": {"red": 0.5, "blue": 0.5}}}}
    same = drift(reference, ["color"], [["red"]] * 50 + [["blue"]] * 50)
    moved = drift(reference, ["color"], [["red"]] * 95 + [["green"]] * 5)
    assert not same["color"]["drifted"] and moved["color"]["drifted"] and moved["color"]["test"] == "chi2"


def test_cli_monitor(registered, tmp_path):
    ws, _ = registered
    app = create_app(load(ws, "digits"), log_folder=ws.root / "logs" / "digits")
    server = serve_in_background(app)
    try:
        _send(server.url, DIGITS.data[:200].tolist())
        _wait_written(app.state.request_log, 10)
    finally:
        server.stop()
        app.state.request_log.close()
    done = subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", "monitor", "digits", "--workspace",
                           str(ws.root), "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["window_rows"] == 200 and "pixel_10" in found["features"]
    assert {"test", "statistic", "p_value", "psi", "drifted"} <= set(found["features"]["pixel_10"])
