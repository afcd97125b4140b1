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
    """The child: (package, frame) in, (values, seconds, failure) out, until the pipe closes."""
    from ..registry import load_predict
    from .app import _json_ready

    loaded: dict[str, Any] = {}
    while True:
        try:
            package, frame = conn.recv()
        except (EOFError, OSError):
            return
        started = time.perf_counter()
        try:
            predict = loaded.get(package) or loaded.setdefault(package, load_predict(package))
            started = time.perf_counter()  # loading the package once is not the shadow's latency
            values, failure = _json_ready(predict(frame)), None
        except Exception as exc:  # a broken shadow is reported, never raised
            values, failure = [], f"{type(exc).__name__}: {exc}"
        conn.send((values, time.perf_counter() - started, failure))


class ShadowProcess:
    """The child process that runs shadows' predictions; started on first use, restarted if it dies."""

    def __init__(self) -> None:
        self._conn = None
        self._process = None
        self._lock = threading.Lock()

    def _start(self) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # never fork a server with running threads
        parent, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child,), name="mlops-shadows", daemon=True)
        self._process.start()
        child.close()
        self._conn = parent

    def predict(self, package: str, frame) -> tuple[list, float, str | None]:
        with self._lock:
            for attempt in (1, 2):
                if self._conn is None or not self._process.is_alive():
                    self._start()
                try:
                    self._conn.send((package, frame))
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
