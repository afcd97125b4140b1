"""Notifications: a webhook or an email when something happens that a person should hear about.

`emit(store, event, text, **subject)` is what the rest of the package calls (a run failed, a model was
registered, ...). It never raises and costs one store write. For each notification subscribed to the event, it
adds a row to the store's outbox, then wakes this process's sender thread.

The sender takes a due row by moving its next try forward (an UPDATE only one process can win), sends it, and
marks it delivered. If the send fails, the row is tried again with backoff, up to MAX_ATTEMPTS. A process that ends
with rows still due waits up to FLUSH_WAIT for them. Whatever is left then, or was taken by a process that died,
is sent by the next process that emits, or by the scheduler on its next pass.

The payload is JSON:
    {"event": "run.failed", "text": "...", "at": "2026-11-24T13:00:00+00:00", "workspace": "/path/.mlops", ...}
`text` is one line a person reads, and Slack's incoming webhooks show it as is. The rest of the payload carries
the event's subject: `run`, `schedule`, `model`, `version`, `reason`, ...
"""
from __future__ import annotations

import atexit
import json
import threading
import time
from datetime import datetime, timezone
from typing import Any

from .errors import MlopsError

EVENTS = ("run.failed", "run.succeeded", "schedule.failed", "gate.failed", "model.registered",
          "data_check.failed", "drift.detected", "model.stale", "rollout.advanced", "rollout.promoted",
          "rollout.rolled_back")
DEFAULT_EVENTS = tuple(e for e in EVENTS if e != "run.succeeded")  # every run succeeding is noise unless asked for
MAX_ATTEMPTS = 6
BACKOFF = 2.0  # seconds before the second try; doubles each time (2, 4, 8, 16, 32)
LEASE = 60.0  # a row being sent is someone's for this long; after that a process that died has lost it
SEND_TIMEOUT = 10.0
FLUSH_WAIT = 5.0



def _warn(message: str, *args) -> None:
    """Logging is imported when something goes wrong, not at every CLI start (the parser reads EVENTS)."""
    import logging

    logging.getLogger(__name__).warning(message, *args)


# -- setting up --------------------------------------------------------------------------------------------------
def check_events(events: list[str] | None) -> list[str]:
    if not events:
        return list(DEFAULT_EVENTS)
    unknown = [e for e in events if e not in EVENTS]
    if unknown:
        raise MlopsError(f"unknown event {', '.join(unknown)}; the events are {', '.join(EVENTS)}")
    return list(dict.fromkeys(events))


def _check_webhook(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise MlopsError(f"--webhook must be an http(s) URL, e.g. https://hooks.slack.com/services/..., got "
                         f"`{masked(url)}`")
    return url


def _check_smtp(smtp: str | None) -> str:
    host, _, port = (smtp or "").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise MlopsError(f"--smtp must be HOST:PORT of a mail server that relays for you, e.g. localhost:25, got "
                         f"`{smtp}`")
    return smtp


def add(store, *, webhook: str | None = None, email: str | None = None, smtp: str | None = None,
        events: list[str] | None = None) -> dict:
    """A webhook or an email address (with the SMTP server that takes the mail) to notify of `events`."""
    if bool(webhook) == bool(email):
        raise MlopsError("give one of --webhook URL or --email ADDRESS (with --smtp HOST:PORT)")
    chosen = check_events(events)
    if webhook:
        row = store.add_notification(kind="webhook", target=_check_webhook(webhook), smtp=None, events=chosen)
    else:
        if "@" not in email or any(c in email for c in " \r\n,;"):
            raise MlopsError(f"--email `{email}` is not one address; give e.g. ops@example.com")
        row = store.add_notification(kind="email", target=email, smtp=_check_smtp(smtp), events=chosen)
    return describe(row)


def masked(url: str) -> str:
    """A webhook URL as it may be shown or logged: its path and query are often the secret (Slack's are)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname}/..." if parts.hostname else "(not a URL)"
    except ValueError:
        return "(not a URL)"


def describe(row: dict) -> dict:
    target = masked(row["target"]) if row["kind"] == "webhook" else row["target"]
    return {"id": row["id"], "kind": row["kind"], "target": target, "smtp": row["smtp"], "events": row["events"]}


# -- emitting ----------------------------------------------------------------------------------------------------
def emit(store, event: str, text: str, **subject: Any) -> None:
    """Queue `event` for every notification that wants it and wake the sender. Never raises: a notification
    must not fail or slow what it reports on."""
    try:
        payload = {"event": event, "text": text, "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   **subject}
        if store.enqueue_notifications(event, json.dumps(payload, default=str), time.time()):
            _sender_for(store).wake()
    except Exception as exc:  # the store is down, say: the run goes on
        _warn("could not queue the %s notification: %s", event, exc)


# -- sending -----------------------------------------------------------------------------------------------------
def send(row: dict) -> None:
    """One delivery; raises with a reason that names no secret."""
    payload = json.loads(row["payload"])
    if row["kind"] == "webhook":
        import urllib.error
        import urllib.request

        request = urllib.request.Request(row["target"], data=json.dumps(payload).encode(), method="POST",
                                         headers={"Content-Type": "application/json",
                                                  "User-Agent": "jupyter-mlops"})
        try:
            with urllib.request.urlopen(request, timeout=SEND_TIMEOUT) as answer:
                answer.read(1 << 16)
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{masked(row['target'])} answered {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RuntimeError(f"{masked(row['target'])} unreachable: {reason}") from None
        return
    import smtplib
    import socket
    from email.message import EmailMessage

    host, _, port = row["smtp"].rpartition(":")
    message = EmailMessage()
    message["From"] = f"jupyter-mlops <jupyter-mlops@{socket.gethostname()}>"
    message["To"] = row["target"]
    message["Subject"] = f"[jupyter-mlops] {payload['text']}"[:200]
    message.set_content(payload["text"] + "\n\n" + json.dumps(payload, indent=1, default=str))
    with smtplib.SMTP(host, int(port), timeout=SEND_TIMEOUT) as smtp:
        smtp.send_message(message)


def deliver_due(store, now: float | None = None, limit: int = 50) -> int:
    """Send what is due now (each row taken by one process only); returns how many were delivered."""
    delivered = 0
    for row in store.due_notifications(time.time() if now is None else now, limit):
        taken_at = time.time()
        if not store.take_notification(row["id"], row["next_try"], taken_at + LEASE):
            continue  # another process has it
        attempts = row["attempts"] + 1
        try:
            send(row)
        except Exception as exc:
            done = attempts >= MAX_ATTEMPTS
            retry = None if done else time.time() + BACKOFF * 2 ** (attempts - 1)
            store.notification_failed(row["id"], attempts, retry, str(exc)[:500])
            _warn("notification %s (%s) %s: %s", row["event"], row["kind"],
                        "given up" if done else f"will be tried again (attempt {attempts})", exc)
            continue
        store.notification_delivered(row["id"], attempts, time.time())
        delivered += 1
    return delivered


class _Sender:
    """This process's delivery thread for one store: sends what is due, sleeps until the next retry or a wake."""

    def __init__(self, store):
        self.store = store
        self.woken = threading.Event()
        self.idle = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="mlops-notify", daemon=True)
        self.thread.start()

    def wake(self) -> None:
        self.idle.clear()
        self.woken.set()

    def _loop(self) -> None:
        while True:
            self.woken.clear()
            try:
                deliver_due(self.store)
                pending = self.store.pending_notifications()
            except Exception as exc:
                _warn("notifications: %s", exc)
                pending = 1
            if not pending and not self.woken.is_set():
                self.idle.set()
            self.woken.wait(timeout=BACKOFF if pending else None)  # asleep until woken when nothing is left

    def flush(self, wait: float) -> None:
        self.idle.wait(wait)


_senders: dict[str, _Sender] = {}
_lock = threading.Lock()


def _sender_for(store) -> _Sender:
    with _lock:
        sender = _senders.get(store.url)
        if sender is None:
            sender = _senders[store.url] = _Sender(store)
        return sender


@atexit.register
def _flush_at_exit() -> None:
    """A CLI run that just failed sends its notification before the process ends (bounded: FLUSH_WAIT)."""
    deadline = time.time() + FLUSH_WAIT
    for sender in list(_senders.values()):
        sender.flush(max(0.0, deadline - time.time()))
