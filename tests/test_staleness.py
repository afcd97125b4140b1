"""Continuous training, part 5: a registered version's age and its training data's age, in /metrics and monitor,
and model.stale notified once past --max-age."""
import subprocess
import sys
import time

import pytest
import requests

import jupyter_mlops
from jupyter_mlops import registry, schedule
from jupyter_mlops.errors import MlopsError
from jupyter_mlops.serving.app import create_app
from jupyter_mlops.serving.server import load, serve_in_background
from jupyter_mlops.workspace import Workspace

from conftest import EXAMPLES


def test_age_in_metrics_and_monitor_and_a_stale_model_notified_once(tmp_path):
    import shutil

    shutil.copy(EXAMPLES / "digits.ipynb", tmp_path / "digits.ipynb")
    ws = Workspace(tmp_path / ".mlops")
    run = jupyter_mlops.run(tmp_path / "digits.ipynb", check=True)
    version = jupyter_mlops.register(run["id"], "digits", max_age="2d", workspace=ws.root)
    assert version["max_age"] == 2 * 86400
    app = create_app(load(ws, "digits"))
    server = serve_in_background(app)
    try:
        text = requests.get(f"{server.url}/metrics").text
    finally:
        server.stop()
    ages = {line.split("{")[0]: float(line.split()[-1]) for line in text.splitlines()
            if line.startswith("mlops_model_") and 'model="digits",variant="primary",version="1"' in line}
    assert 0 <= ages["mlops_model_age_seconds"] < 600 and ages["mlops_model_max_age_seconds"] == 2 * 86400
    assert "mlops_model_data_age_seconds" not in ages  # digits come from scikit-learn's package: no data file read

    found = jupyter_mlops.monitor("digits", workspace=ws.root)["age"]
    assert found["stale"] is False and found["max_age_seconds"] == 2 * 86400
    shown = subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", "monitor", "digits"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
    assert "age: model 0.0 days, its training data unknown, limit 2.0 days" in shown.stdout, shown

    jupyter_mlops.add_notification(webhook="http://127.0.0.1:9/never", events=["model.stale"], workspace=ws.root)
    scheduler = schedule.Scheduler(ws)
    scheduler.tick(now=time.time() + 86400)  # a day later: not stale yet
    scheduler.tick(now=time.time() + 3 * 86400)  # three days later: stale, said once
    scheduler.tick(now=time.time() + 4 * 86400)
    events = [r for r in ws.store.notification_outbox() if r["event"] == "model.stale"]
    assert len(events) == 1
    import json

    payload = json.loads(next(r for r in ws.store.notification_outbox() if r["event"] == "model.stale")["payload"])
    assert payload["text"].startswith("digits version 1 is stale: registered 3.0 days ago, its limit is 2.0 days")
    assert payload["stale"] is True and payload["model"] == "digits"


def test_ages_of_a_version_and_bad_max_ages(tmp_path, monkeypatch):
    now = 1_800_000_000.0
    found = registry.age({"created": now - 3600, "data_time": now - 7200, "max_age": 1800}, now)
    assert found == {"model_age_seconds": 3600, "data_age_seconds": 7200, "max_age_seconds": 1800, "stale": True}
    assert registry.age({"created": now, "data_time": None, "max_age": None}, now)["stale"] is False
    with pytest.raises(MlopsError, match="--max-age `soon` is not a duration"):
        jupyter_mlops.register("x", "digits", max_age="soon", workspace=tmp_path / ".mlops")
    monkeypatch.setenv("MLOPS_MAX_MODEL_AGE", "5s")
    with pytest.raises(MlopsError, match=r"--max-age \(or \$MLOPS_MAX_MODEL_AGE\) 5s is too short: at least 60 s"):
        jupyter_mlops.register("x", "digits", workspace=tmp_path / ".mlops")
