"""Canary weights, sticky A-B routing and shadows, over real HTTP."""
import time

import pytest
import requests
from sklearn.datasets import load_digits

import jupyter_mlops
from jupyter_mlops.serving.app import create_app
from jupyter_mlops.serving.server import deployment, serve_in_background
from jupyter_mlops.workspace import Workspace

from conftest import register_digits

DIGITS = load_digits()


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    """Version 1 (C=5, production) and version 2 (C=0.05: disagrees on some digits) of one model."""
    folder = tmp_path_factory.mktemp("rollout")
    register_digits(folder, ("5", "0.05"))
    return Workspace(folder / ".mlops")


def serve(ws, **options):
    return serve_in_background(create_app(deployment(ws, "digits", **options)))


def test_canary_takes_its_weight_within_tolerance(versions):
    server = serve(versions, canary=2, weight=20)
    try:
        body = {"instances": DIGITS.data[:1].tolist()}
        with requests.Session() as session:
            seen = [session.post(f"{server.url}/invocations", json=body).headers["x-mlops-variant"]
                    for _ in range(2000)]
    finally:
        server.stop()
    share = seen.count("canary") / len(seen)
    assert set(seen) == {"primary", "canary"}
    assert 0.16 <= share <= 0.24  # 20% +- 4 standard deviations of a binomial(2000, 0.2)


def test_a_version_asked_for_by_its_route_is_the_one_that_answers(versions):
    """OIP's /versions/V routes pick the deployed version itself, whatever the canary draw."""
    server = serve(versions, canary=2, weight=50)
    try:
        body = {"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP64", "data": DIGITS.data[:1].tolist()}]}
        for version, variant in (("1", "primary"), ("2", "canary")):
            for _ in range(10):
                reply = requests.post(f"{server.url}/v2/models/digits/versions/{version}/infer", json=body)
                assert reply.headers["x-mlops-variant"] == variant and reply.json()["model_version"] == version
            assert requests.get(f"{server.url}/v2/models/digits/versions/{version}/ready").status_code == 200
        assert requests.get(f"{server.url}/v2/models/digits").json()["versions"] == ["1", "2"]
        missing = requests.post(f"{server.url}/v2/models/digits/versions/3/infer", json=body)
        assert missing.status_code == 404 and "deployed: 1 (primary), 2 (canary)" in missing.json()["error"]
    finally:
        server.stop()


def test_sticky_header_keeps_each_user_on_one_variant(versions):
    server = serve(versions, canary=2, weight=50, sticky_header="x-user")
    try:
        body = {"instances": DIGITS.data[:1].tolist()}
        by_user = {}
        with requests.Session() as session:
            for user in range(40):
                variants = {session.post(f"{server.url}/invocations", json=body,
                                         headers={"x-user": f"user-{user}"}).headers["x-mlops-variant"]
                            for _ in range(5)}
                assert len(variants) == 1, (user, variants)
                by_user[user] = variants.pop()
    finally:
        server.stop()
    assert set(by_user.values()) == {"primary", "canary"}  # users are spread over both


def test_shadow_never_changes_the_answer_and_is_compared(versions):
    rows = DIGITS.data[:200].tolist()
    plain = serve(versions)
    try:
        expected = requests.post(f"{plain.url}/invocations", json={"instances": rows}).json()
    finally:
        plain.stop()
    server = serve(versions, shadow=2)
    try:
        reply = requests.post(f"{server.url}/invocations", json={"instances": rows})
        assert reply.json() == expected and reply.headers["x-mlops-variant"] == "primary"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            report = requests.get(f"{server.url}/v2/shadow").json()
            if report["rows"] == 200:
                break
            time.sleep(0.1)
        metrics = requests.get(f"{server.url}/metrics").text
    finally:
        server.stop()
    assert report["rows"] == 200 and 0.5 < report["agreement"] < 1.0  # C=0.05 disagrees on some digits
    assert report["variants"]["shadow"]["requests"] == 1 and report["mean_latency_delta_ms"] is not None
    assert 'mlops_shadow_rows_total{agreement="disagree",model="digits",version="2"}' in metrics


def test_bad_weights_are_refused(versions):
    from jupyter_mlops.errors import MlopsError

    with pytest.raises(MlopsError, match="less than 100"):
        deployment(versions, "digits", canary=2, weight=100)


def test_promote_and_rollback_under_load_drop_nothing(versions):
    import threading

    from jupyter_mlops.serving.server import DeploymentWatcher

    app = create_app(deployment(versions, "digits"))
    watcher = DeploymentWatcher(versions, "digits", app.state.live, interval=0.1)
    server = serve_in_background(app)
    seen, failures, stop = [], [], threading.Event()
    body = {"instances": DIGITS.data[:1].tolist()}

    def client() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                reply = session.post(f"{server.url}/invocations", json=body, timeout=30)
                if reply.status_code != 200:
                    failures.append(reply.text)
                seen.append(reply.headers["x-mlops-model-version"])

    def wait_for(version: str) -> None:
        deadline = time.monotonic() + 30
        start = len(seen)
        while time.monotonic() < deadline and version not in seen[start:]:
            time.sleep(0.05)
        assert version in seen[start:], f"version {version} never answered"

    threads = [threading.Thread(target=client) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        wait_for("1")
        jupyter_mlops.promote("digits", 2, workspace=versions.root)
        wait_for("2")
        jupyter_mlops.rollback("digits", workspace=versions.root)
        wait_for("1")
        versions.store.save_deployment("digits", {"canary": 2, "weight": 50})  # what `deploy` does to a live one
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and app.state.live.current.canaries == []:
            time.sleep(0.05)
        assert app.state.live.current.canaries[0][0].version == 2
        deadline = time.monotonic() + 60  # "under load": enough requests, however slow this machine is today
        while time.monotonic() < deadline and len(seen) <= 100:
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        watcher.stop()
        server.stop()
        versions.store.save_deployment("digits", {})
    assert failures == [] and len(seen) > 100 and watcher.errors == []


def test_cli_deploy_updates_the_running_server(versions):
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cli = [sys.executable, "-m", "jupyter_mlops.cli", "deploy", "digits", "--port", str(port), "--workspace",
           str(versions.root)]
    proc = subprocess.Popen(cli, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                requests.get(f"{url}/v2/health/ready", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        update = subprocess.run(cli + ["--canary", "2", "--weight", "50"], capture_output=True, text=True,
                                timeout=60)
        assert update.returncode == 0 and "updated the running deployment" in update.stdout, update.stderr
        body = {"instances": DIGITS.data[:1].tolist()}
        deadline = time.monotonic() + 20
        variants = set()
        while time.monotonic() < deadline and "canary" not in variants:
            variants.add(requests.post(f"{url}/invocations", json=body).headers["x-mlops-variant"])
        assert "canary" in variants
    finally:
        proc.terminate()
        proc.wait(30)
        versions.store.save_deployment("digits", {})


def test_stopping_a_server_ends_its_shadows_and_its_request_log(versions, tmp_path):
    """The app's lifespan owns what the server starts: stopping the server ends the mirror thread, the shadow
    process and the request log's writer (the log complete on disk), with no caller reaching into app.state."""
    app = create_app(deployment(versions, "digits", shadow=2), log_folder=tmp_path / "logs")
    server = serve_in_background(app)
    try:
        for start in range(0, 50, 10):
            requests.post(f"{server.url}/invocations", json={"instances": DIGITS.data[start:start + 10].tolist()})
        deadline = time.monotonic() + 30
        while requests.get(f"{server.url}/v2/shadow").json()["rows"] < 50 and time.monotonic() < deadline:
            time.sleep(0.1)
        mirror = app.state.server.mirror
        thread, process = mirror._thread, mirror.process._process
        assert thread.is_alive() and process.is_alive()
    finally:
        server.stop()
    assert not thread.is_alive() and not process.is_alive()
    assert not app.state.request_log.thread.is_alive()
    logged = (tmp_path / "logs" / "requests.jsonl").read_text().splitlines()
    assert len(logged) == 5


def test_undeploy_stops_a_server_started_from_a_notebook(versions):
    """%mlops deploy serves on a thread of the kernel's process; undeploy there stops it and forgets it."""
    started = jupyter_mlops.deploy("digits", workspace=versions.root, port=0)
    server = started["server"]
    assert requests.get(f"{started['url']}/ping").status_code == 200
    done = jupyter_mlops.undeploy("digits", workspace=versions.root)
    assert done["status"] == "stopped" and "a thread of this process" in done["lines"][0]
    assert not server.thread.is_alive() and jupyter_mlops.deployments(workspace=versions.root) == []
    with pytest.raises(jupyter_mlops.errors.MlopsError, match="no deployment `digits`.*deployments there: none"):
        jupyter_mlops.undeploy("digits", workspace=versions.root)
