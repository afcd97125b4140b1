"""Continuous training, part 3: a schedule fires when a deployed model's inputs drift (at most once per window),
retrains, and registers the new model behind gates; drift.detected reaches a real webhook receiver."""
import numpy as np
import pytest
from sklearn.datasets import load_digits

import jupyter_mlops
from jupyter_mlops import schedule
from jupyter_mlops.errors import MlopsError
from jupyter_mlops.serving.app import create_app
from jupyter_mlops.serving.server import load, serve_in_background
from jupyter_mlops.workspace import Workspace

from conftest import register_digits
from test_monitor import _send, _wait_written
from test_notify import Receiver

T0 = 1_800_000_000.0


def test_drift_fires_a_retrain_once_per_window_and_registers_it_behind_its_gate(tmp_path):
    [version] = register_digits(tmp_path)
    ws = Workspace(tmp_path / ".mlops")
    receiver = Receiver()
    jupyter_mlops.add_notification(webhook=receiver.url, events=["drift.detected"], workspace=ws.root)
    added = jupyter_mlops.add_schedule(tmp_path / "digits.ipynb", "on-drift", on_drift="digits", every="1m",
                                       drift_window="1h", register="digits", require=["accuracy>=0.9"],
                                       workspace=ws.root)
    assert added["when"] == ("on drift of digits (any of its features; checked every 60 s, at most once per 3600 s)"
                             ", then register digits if accuracy>=0.9")
    scheduler = schedule.Scheduler(ws)
    assert scheduler.tick(now=T0, wait=True) == []  # no requests logged yet: nothing to judge

    # the deployment's traffic: brighter, saturated digits
    rows = np.clip(load_digits().data[np.random.default_rng(0).integers(0, 1797, 400)] + 4, 0, 16).tolist()
    app = create_app(load(ws, "digits"), log_folder=ws.root / "logs" / "digits")
    server = serve_in_background(app)
    try:
        _send(server.url, rows)
        _wait_written(app.state.request_log, len(rows) // 20)
    finally:
        server.stop()
        app.state.request_log.close()

    [fired] = scheduler.tick(now=T0 + 60, wait=True)
    assert fired["status"] == "fired" and "digits version 1:" in fired["reason"]
    assert "features drifted" in fired["reason"] and "over its latest 400 requests" in fired["reason"]
    assert scheduler.tick(now=T0 + 180, wait=True) == []  # still drifting, same window: not again
    [tick] = jupyter_mlops.schedule_history("on-drift", workspace=ws.root)
    assert tick["status"] == "succeeded" and tick["reason"].endswith("; registered digits version 2"), tick
    [model] = jupyter_mlops.models(workspace=ws.root)
    assert [v["version"] for v in model["versions"]] == [1, 2] and model["versions"][1]["run_id"] == tick["run_id"]
    [heard] = receiver.wait_for(1)
    assert heard["json"]["event"] == "drift.detected" and heard["json"]["model"] == "digits"
    assert heard["json"]["drifted_features"] and heard["json"]["schedule"] == "on-drift"
    assert len(scheduler.tick(now=T0 + 3700, wait=True)) == 1  # the next window: drifting still, fires again
    receiver.server.shutdown()


def test_drift_and_register_options_are_checked_naming_the_option(tmp_path, make_notebook):
    nb = make_notebook([("x = 1", "parameters"), ("y = x", "data")])
    ws = Workspace(tmp_path / ".mlops")
    with pytest.raises(MlopsError, match="--on-drift wine: no model `wine` is registered"):
        schedule.add(ws, nb, "s", None, on_drift="wine")
    with pytest.raises(MlopsError, match="--threshold 1.5: the share of features"):
        schedule.add(ws, nb, "s", None, on_drift="wine", threshold=1.5)
    with pytest.raises(MlopsError, match="--threshold and --drift-window go with --on-drift"):
        schedule.add(ws, nb, "s", "0 3 * * *", threshold=0.2)
    with pytest.raises(MlopsError, match="--require goes with --register"):
        schedule.add(ws, nb, "s", "0 3 * * *", require=["accuracy>=0.9"])
    with pytest.raises(MlopsError, match="give one of --on-data-change, --on-drift, not both"):
        schedule.add(ws, nb, "s", None, on_data_change=True, on_drift="wine")
    with pytest.raises(MlopsError, match="accuracy=>0.9"):
        schedule.add(ws, nb, "s", "0 3 * * *", register="wine", require=["accuracy=>0.9"])
    assert ws.store.schedules() == []
