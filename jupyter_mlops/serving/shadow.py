"""Shadow predictions in a process of their own.

A shadow's `predict` (a scikit-learn model, say) holds the GIL for as long as it runs; on the server's own thread
it would delay the primary's next request by that much. Here the server's mirror thread only hands the request's
frame to a child process and waits on a pipe (without the GIL); the child loads each shadow's package once and
answers with the shadow's values and how long they took. A shadow built in Python without a package (tests, the
notebook) runs on the mirror thread as before.
"""
from __future__ import annotations

import threading
import time
from typing import Any


def _serve(conn) -> None:
    """The child: (package, columns, rows) in, (values, seconds, failure) out, until the pipe closes. `rows` is a
    numeric array (rebuilt into a DataFrame with the columns the parent sent once per package) or a DataFrame."""
    import os

    import pandas as pd

    from ..registry import load_predict

    try:  # best effort: the shadow runs when a core is idle, the primary's requests get the CPU first
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):  # not Linux
        os.nice(19)
    from .predictions import json_ready

    loaded: dict[str, Any] = {}
    columns_of: dict[str, list] = {}
    while True:
        try:
            package, digest, columns, rows = conn.recv()
        except (EOFError, OSError):
            return
        if columns is not None:
            columns_of[package] = columns
        frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows, columns=columns_of[package])
        started = time.perf_counter()
        try:
            predict = loaded.get(package) or loaded.setdefault(package, load_predict(package, digest))
            started = time.perf_counter()  # loading the package once is not the shadow's latency
            values, failure = json_ready(predict(frame)), None
        except Exception as exc:  # a broken shadow is reported, never raised
            values, failure = [], f"{type(exc).__name__}: {exc}"
        try:
            conn.send((values, time.perf_counter() - started, failure))
        except OSError:  # the server closed the pipe: it is shutting down
            return


class ShadowProcess:
    """The child process that runs shadows' predictions; started on first use, restarted if it dies."""

    def __init__(self) -> None:
        self._conn = None
        self._process = None
        self._lock = threading.Lock()
        self._columns_sent: set[str] = set()

    def _start(self) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # never fork a server with running threads
        parent, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child,), name="mlops-shadows", daemon=True)
        self._process.start()
        child.close()
        self._conn = parent
        self._columns_sent = set()  # a new child knows no columns yet

    def predict(self, package: str, frame, digest: str | None = None) -> tuple[list, float, str | None]:
        with self._lock:
            for attempt in (1, 2):
                if self._conn is None or not self._process.is_alive():
                    self._start()
                try:
                    # a numeric frame travels as its array (pickled in microseconds, the GIL held that long)
                    numeric = all(dtype.kind in "fiub" for dtype in frame.dtypes)
                    columns = None if package in self._columns_sent else list(frame.columns)
                    self._conn.send((package, digest, columns, frame.to_numpy() if numeric else frame))
                    self._columns_sent.add(package)
                    return self._conn.recv()
                except (EOFError, OSError, BrokenPipeError) as exc:
                    self._conn = None
                    if attempt == 2:
                        return [], 0.0, f"the shadow process died ({exc})"
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self._process is not None:
                self._process.join(2)
                if self._process.is_alive():
                    self._process.terminate()
