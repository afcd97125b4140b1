"""Feedback: outcomes joined to the predictions they judge, by request id.

Every prediction answer carries `x-request-id`: the client's own when it sent one, else one made here. The request
log's writer thread also records (id, time, variant, version, predictions) in `predictions.db`. That is a SQLite
file in the deployment's log folder, shared by every worker of the group and kept to the latest MAX_PREDICTIONS.

`POST /v2/models/NAME/feedback` and `POST /feedback` take `{"request_id": ..., "outcome": ...}`, or a list of
them (`{"feedback": [...]}` or a bare list). How an outcome is read:
- When the request's prediction is a label (text, an integer, a bool), the outcome is a label too, and it is
  correct when it equals the prediction.
- When the prediction is a number, the outcome is a reward (a conversion 0/1, revenue, ...).
- `"label": ...` or `"reward": ...` instead of `"outcome"` says which it is (a classifier judged by conversions
  sends rewards).
- A request of several rows takes one outcome per row (a list), or one for all of them.

A request id that was never answered here is refused with a 404 that names it; ids answered within the last
moment are waited for, since the log is written a few times a second. Feedback may come hours later: it joins as
long as the prediction is kept. A later outcome for the same request replaces the earlier one.
"""
from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from .model import ClientError

DB_NAME = "predictions.db"
MAX_PREDICTIONS = 1_000_000  # kept per deployment; the oldest are forgotten past it
MAX_ITEMS = 10_000  # outcomes in one feedback request
WAIT_FOR_LOG = 1.0  # seconds a feedback request waits for predictions not yet written (the log's batches)
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")


def new_request_id() -> str:
    """A request id made here: 32 hex digits, the time in microseconds first, then 76 random bits.
    - Ordered by time, ids are written at the right edge of predictions.db's index: with uuid4's random ids every
      insert landed on a random page, and past a few minutes of serving the request log's thread spent 26-32 us per
      row in SQLite (a quarter of a core at 2,000 req/s) against 7-11 us.
    - Random after the time, so that one answer's id tells nothing of another's: outcomes are joined by id, and a
      later outcome replaces an earlier one."""
    return f"{time.time_ns() // 1000:013x}{os.urandom(10).hex()[:19]}"


def request_id(given: str | None) -> str:
    """The client's `x-request-id` when it is a sensible one, else a new id; a bad one is refused, named."""
    if given is None:
        return new_request_id()
    if not _REQUEST_ID.fullmatch(given):
        raise ClientError(f"x-request-id `{given[:60]}` is not a request id: at most 128 characters of letters, "
                          "digits and . _ : @ / + = -")
    return given


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript("""
        CREATE TABLE IF NOT EXISTS predictions (id TEXT PRIMARY KEY, at REAL NOT NULL, variant TEXT NOT NULL,
                                                version INTEGER NOT NULL, outputs TEXT NOT NULL);
        CREATE INDEX IF NOT EXISTS ix_predictions_at ON predictions (at);
        CREATE TABLE IF NOT EXISTS feedback (id TEXT PRIMARY KEY, at REAL NOT NULL, kind TEXT NOT NULL,
                                             outcome TEXT NOT NULL, correct REAL, reward REAL, rows INTEGER);
    """)
    return conn


class FeedbackStore:
    """`predictions.db` of one deployment's log folder: written by request logs, read by the feedback endpoint,
    `abtest` and `monitor`."""

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / DB_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = _connect(self.path)
        self._lock = threading.Lock()  # one connection, several threads (the writer, the endpoint's)
        self._since_trim = 0
        self.wake = None  # the request log's: write the answers gathered now (an outcome is waiting for them)

    def close(self) -> None:
        self._conn.close()

    # -- the request log's side -----------------------------------------------------------------------------------
    def record(self, rows: list[tuple[str, float, str, int, Any]]) -> None:
        """(id, at, variant, version, predictions) of answered requests, in one transaction and one statement: the
        rows go in as one JSON array that SQLite unpacks (json_each). sqlite3 lets go of the GIL around each step of
        a statement and must take it back after; `executemany` steps once per row, and each time the serving
        thread held the GIL for a switch interval (5 ms): 500 rows took 2.8 s against 20 ms, and at 3,000 req/s
        the request log dropped half its records."""
        from .monitor import _dumps

        if not rows:
            return
        values = _dumps([(i, at, variant, version, _dumps({"v": outputs}))
                         for i, at, variant, version, outputs in rows])
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute("INSERT OR REPLACE INTO predictions SELECT json_extract(value, '$[0]'), "
                                   "json_extract(value, '$[1]'), json_extract(value, '$[2]'), "
                                   "json_extract(value, '$[3]'), json_extract(value, '$[4]') FROM json_each(?)",
                                   (values,))
                self._since_trim += len(rows)
                if self._since_trim > 10_000:  # now and then, not per batch
                    self._since_trim = 0
                    self._conn.execute("DELETE FROM predictions WHERE at < (SELECT at FROM predictions ORDER BY at "
                                       "DESC LIMIT 1 OFFSET ?)", (MAX_PREDICTIONS,))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    # -- the feedback endpoint's side ------------------------------------------------------------------------------
    def _predictions(self, ids: list[str]) -> dict[str, tuple]:
        found = {}
        with self._lock:
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                marks = ",".join("?" * len(chunk))
                for row in self._conn.execute(f"SELECT id, variant, version, outputs FROM predictions "
                                              f"WHERE id IN ({marks})", chunk):
                    found[row[0]] = row[1:]
        return found

    def add(self, items: list[dict], wait: float = WAIT_FOR_LOG) -> list[dict]:
        """Join each outcome to its prediction and keep it; returns what was joined (variant, version, kind,
        correct, reward) for the metrics. Unknown ids: a 404 naming them, nothing kept."""
        ids = [item["request_id"] for item in items]
        found = self._predictions(ids)
        deadline = time.monotonic() + wait
        while len(found) < len(set(ids)) and time.monotonic() < deadline:  # written a moment later, maybe
            if self.wake is not None:
                self.wake()
            time.sleep(0.01)
            found.update(self._predictions([i for i in ids if i not in found]))
        missing = [i for i in dict.fromkeys(ids) if i not in found]
        if missing:
            shown = ", ".join(f"`{m}`" for m in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5
                                                                 else "")
            raise ClientError(f"no prediction with request id {shown} is kept here: send the `x-request-id` of an "
                              "answer from this deployment (ids are kept for its latest "
                              f"{MAX_PREDICTIONS:,} predictions); nothing was recorded", 404)
        now, rows, joined = time.time(), [], []
        for item in items:
            variant, version, outputs = found[item["request_id"]]
            kind, correct, reward, judged = judge(item, json.loads(outputs)["v"])
            rows.append((item["request_id"], now, kind, json.dumps(item.get("value")), correct, reward, judged))
            joined.append({"variant": variant, "version": version, "kind": kind, "correct": correct,
                           "reward": reward, "rows": judged})
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany("INSERT OR REPLACE INTO feedback VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return joined

    def outcomes(self) -> list[dict]:
        """Every joined outcome: variant, version, kind, correct (the share of its rows), reward, rows judged, at
        (when it came), answered (when the answer it judges was given) (for abtest, monitor and rollouts)."""
        with self._lock:
            rows = self._conn.execute("SELECT p.variant, p.version, f.kind, f.correct, f.reward, f.rows, f.at, p.at "
                                      "FROM feedback f JOIN predictions p ON p.id = f.id").fetchall()
        return [dict(zip(("variant", "version", "kind", "correct", "reward", "rows", "at", "answered"), r))
                for r in rows]


def _is_label(value: Any) -> bool:
    return isinstance(value, (str, bool)) or (isinstance(value, int))


def judge(item: dict, outputs: list) -> tuple[str, float | None, float | None, int]:
    """(kind, correct share, reward, rows judged) of one outcome against its request's predictions (see the
    module's text). A label judges every row of its request; a reward is one per request unless given per row."""
    value, kind = item["value"], item["kind"]
    predictions = [o[0] if isinstance(o, list) and len(o) == 1 else o for o in outputs]
    values = value if isinstance(value, list) else [value] * len(predictions)
    if len(values) != len(predictions):
        raise ClientError(f"request `{item['request_id']}` had {len(predictions)} rows, the outcome has "
                          f"{len(values)} values: send one per row, or one for all")
    if kind is None:
        kind = "label" if all(_is_label(p) for p in predictions) else "reward"
    if kind == "label":
        hits = [str(v) == str(p) for v, p in zip(values, predictions)]
        return kind, sum(hits) / len(hits), None, len(hits)
    try:
        rewards = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ClientError(f"request `{item['request_id']}`: a reward must be a number, got {value!r}; send "
                          "`label` for a class") from None
    return kind, None, sum(rewards) / len(rewards), len(rewards) if isinstance(value, list) else 1


def parse(body: Any) -> list[dict]:
    """The feedback items of a request body, each {request_id, value, kind}; errors name the item and field."""
    items = body.get("feedback") if isinstance(body, dict) and "feedback" in body else body
    items = [items] if isinstance(items, dict) else items
    if not isinstance(items, list) or not items:
        raise ClientError('send {"request_id": "...", "outcome": ...}, or a list of them under "feedback"')
    if len(items) > MAX_ITEMS:
        raise ClientError(f"{len(items):,} outcomes in one request; send at most {MAX_ITEMS:,} at a time")
    out = []
    for n, item in enumerate(items):
        where = f"feedback item {n}" if len(items) > 1 else "the feedback"
        if not isinstance(item, dict) or not isinstance(item.get("request_id"), str):
            raise ClientError(f"{where} needs a `request_id` (the x-request-id of the answer it judges)")
        given = [k for k in ("outcome", "label", "reward") if k in item]
        if len(given) != 1:
            raise ClientError(f"{where} needs exactly one of `outcome`, `label` or `reward`")
        value = item[given[0]]
        if value is None or isinstance(value, dict):
            raise ClientError(f"{where}: `{given[0]}` must be a label, a number, or a list of them (one per row)")
        out.append({"request_id": request_id(item["request_id"]), "value": value,
                    "kind": None if given[0] == "outcome" else given[0]})
    return out
