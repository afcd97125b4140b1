"""Notifications against a real HTTP receiver on 127.0.0.1 and a real SMTP server (aiosmtpd): what is sent, when,
retried with backoff, never failing the run, secrets never shown."""
import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import jupyter_mlops
from jupyter_mlops import api, notify
from jupyter_mlops.errors import MlopsError
from jupyter_mlops.workspace import Workspace

FAILING = [("limit = 10", "parameters"), ("x = limit", "data"),
           ("from jupyter_mlops import log_metrics\nif x > 5:\n    raise ValueError('x is too big')\nlog_metrics(x=x)",
            "train")]
SECRET = "/services/T000/B000/very-secret-token"


class Receiver:
    """An HTTP receiver that records the JSON bodies POSTed to it; answers `fail_first` requests with a 500."""

    def __init__(self, fail_first: int = 0):
        received, lock = [], threading.Lock()
        state = {"failures": fail_first}

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with lock:
                    failing = state["failures"] > 0
                    state["failures"] -= 1
                    if not failing:
                        received.append({"path": self.path, "json": json.loads(body)})
                self.send_response(500 if failing else 200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}{SECRET}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 30.0) -> list[dict]:
        deadline = time.time() + timeout
        while len(self.received) < count and time.time() < deadline:
            time.sleep(0.05)
        return self.received


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_a_failed_cli_run_reaches_the_webhook_before_the_process_ends(make_notebook, receiver):
    nb = make_notebook(FAILING)
    added = _cli("notify", "add", "--webhook", receiver.url, cwd=nb.parent)
    assert added.returncode == 0 and "notification 1: webhook http://127.0.0.1/..." in added.stdout, added
    assert "very-secret-token" not in added.stdout
    ran = _cli("run", str(nb), cwd=nb.parent)
    assert ran.returncode != 0  # the run failed; the notification did not change that
    [hit] = receiver.received  # delivered by the time the CLI exited
    assert hit["path"] == SECRET
    payload = hit["json"]
    assert payload["event"] == "run.failed" and payload["run"]["status"] == "failed"
    assert "x is too big" in payload["text"] and "step `train` failed" in payload["text"]
    assert payload["text"].startswith("run ") and "nb.ipynb" in payload["text"]
    ok = _cli("run", str(nb), "-p", "limit", "3", cwd=nb.parent)
    assert ok.returncode == 0 and len(receiver.received) == 1  # run.succeeded is opt-in
    listed = _cli("notify", "list", cwd=nb.parent)
    assert "very-secret-token" not in listed.stdout and "run.failed" in listed.stdout, listed


def test_deliveries_are_retried_with_backoff_and_given_up_saying_why(tmp_path, monkeypatch):
    monkeypatch.setattr(notify, "BACKOFF", 0.05)
    flaky = Receiver(fail_first=2)
    ws = Workspace(tmp_path / ".mlops")
    notify.add(ws.store, webhook=flaky.url, events=["model.registered"])
    notify.emit(ws.store, "model.registered", "digits version 3 registered", model="digits", version=3)
    notify.emit(ws.store, "run.failed", "not subscribed")
    [hit] = flaky.wait_for(1)
    assert hit["json"]["model"] == "digits" and hit["json"]["text"] == "digits version 3 registered"
    deadline = time.time() + 10
    while ws.store.notification_outbox()[0]["status"] != "delivered" and time.time() < deadline:
        time.sleep(0.05)
    [row] = ws.store.notification_outbox()
    assert row["status"] == "delivered" and row["attempts"] == 3
    flaky.server.shutdown()
    flaky.server.server_close()

    monkeypatch.setattr(notify, "MAX_ATTEMPTS", 2)
    gone = Workspace(tmp_path / "other")
    notify.add(gone.store, webhook=flaky.url)  # nobody listens there any more
    notify.emit(gone.store, "run.failed", "run x failed")
    deadline = time.time() + 10
    while gone.store.notification_outbox()[0]["status"] == "pending" and time.time() < deadline:
        time.sleep(0.05)
    [row] = gone.store.notification_outbox()
    assert row["status"] == "failed" and row["attempts"] == 2
    assert "http://127.0.0.1/... unreachable" in row["error"] and "secret" not in row["error"]
    with pytest.raises(MlopsError, match="notification 1 was not delivered: http://127.0.0.1/... unreachable"):
        api.test_notification(1, workspace=gone.root)


def test_a_failed_gate_and_a_registration_are_mailed(tmp_path, monkeypatch):
    from aiosmtpd.controller import Controller

    class Inbox:
        def __init__(self):
            self.mails = []

        async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
            self.mails.append(envelope)
            return "250 OK"

    from conftest import free_port, register_digits

    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        ws = Workspace(tmp_path / ".mlops")
        api.add_notification(email="ops@example.com", smtp=f"127.0.0.1:{port}", workspace=ws.root)
        [version] = register_digits(tmp_path)
        with pytest.raises(MlopsError, match="did not pass the quality gate"):
            jupyter_mlops.register(version["run_id"], "digits", require=["accuracy>=1.01"], workspace=ws.root)
        deadline = time.time() + 20
        while len(inbox.mails) < 2 and time.time() < deadline:
            time.sleep(0.05)
    finally:
        controller.stop()
    import email
    import email.policy

    subjects = [str(email.message_from_bytes(m.content, policy=email.policy.default)["Subject"])
                for m in inbox.mails]
    assert subjects[0].startswith("[jupyter-mlops] digits version 1 registered from run"), subjects
    assert "did not pass the quality gate for digits: accuracy" in subjects[1], subjects
    assert all(m.rcpt_tos == ["ops@example.com"] for m in inbox.mails)


def test_bad_notification_settings_are_refused_naming_the_option(tmp_path):
    store = Workspace(tmp_path / ".mlops").store
    with pytest.raises(MlopsError, match="one of --webhook URL or --email"):
        notify.add(store)
    with pytest.raises(MlopsError, match="--webhook must be an http"):
        notify.add(store, webhook="ftp://example.com/x")
    with pytest.raises(MlopsError, match="unknown event run.exploded"):
        notify.add(store, webhook="https://example.com/hook", events=["run.exploded"])
    with pytest.raises(MlopsError, match="--smtp must be HOST:PORT"):
        notify.add(store, email="ops@example.com", smtp="mailhost")
    with pytest.raises(MlopsError, match="--email `a@b, c@d` is not one address"):
        notify.add(store, email="a@b, c@d", smtp="localhost:25")
    with pytest.raises(MlopsError, match="no notification 7"):
        api.remove_notification(7, workspace=tmp_path / ".mlops")
    assert store.notifications() == []
