"""Shadows: every request the primary answers is copied, after its answer has gone out, to the deployment's shadow
versions; their predictions are compared with the primary's (agreement per row, latency difference) in a
`ShadowReport` and in Prometheus. `ShadowMirror` owns the bounded queue, the thread that drains it a few times a
second and the shadow process (shadow.py); the app's lifespan starts and stops it. In a server of several worker
processes each mirrors its own requests; each saves its report (at most once a second) in the folder the workers
share, and `/v2/shadow`, whichever worker answers it, adds them all up.
"""
from __future__ import annotations

import collections
import json
import os
import queue
import threading
import time

from .metrics import Drops
from .predictions import json_ready
from .shadow import ShadowProcess

MIRROR_INTERVAL = 0.05  # seconds the mirror thread gathers requests before the shadows predict them together
MIRROR_BATCH = 500
_STOP = object()


SAVE_EVERY = 1.0  # seconds between a worker's saves of its report for the others


class ShadowReport:
    """Mirrored answers compared with the primary's: agreement per row and latency difference, the latest kept.
    `shared` (a worker group's folder): the other workers' reports are read from it, this one's saved there."""

    def __init__(self, keep: int = 1000, shared: str | None = None, worker: int = 0):
        self.records: collections.deque = collections.deque(maxlen=keep)
        self.rows = self.agreeing = 0
        self._lock = threading.Lock()
        self.keep, self.shared, self.worker = keep, shared, worker
        self._saved, self._saved_rows = 0.0, 0

    def _state(self) -> dict:
        with self._lock:
            return {"rows": self.rows, "agreeing": self.agreeing, "records": list(self.records)}

    @property
    def unsaved(self) -> bool:
        """Whether the others' copy of this report is behind it."""
        return self.shared is not None and self._saved_rows != self.rows

    def save(self, now: bool = False) -> None:
        """This worker's report where the others read it (atomically: a reader never sees half of it)."""
        if not self.unsaved or not (now or time.monotonic() - self._saved >= SAVE_EVERY):
            return
        self._saved, self._saved_rows = time.monotonic(), self.rows
        path = os.path.join(self.shared, f"shadow-{self.worker}.json")
        with open(path + ".tmp", "w") as f:
            json.dump(self._state(), f)
        os.replace(path + ".tmp", path)

    def _states(self) -> list[dict]:
        states = [self._state()]
        if self.shared is not None:
            for name in os.listdir(self.shared):
                if name.startswith("shadow-") and name.endswith(".json") and name != f"shadow-{self.worker}.json":
                    try:
                        with open(os.path.join(self.shared, name)) as f:
                            states.append(json.load(f))
                    except (OSError, ValueError):  # a worker's file being replaced: it is read next time
                        continue
        return states

    def add(self, record: dict) -> None:
        with self._lock:
            self.records.append(record)
            self.rows += record["rows"]
            self.agreeing += record["agreeing"]

    def summary(self) -> dict:
        states = self._states()
        rows, agreeing = sum(s["rows"] for s in states), sum(s["agreeing"] for s in states)
        records = [r for s in states for r in s["records"]]
        if len(states) > 1:
            records = sorted(records, key=lambda r: r["at"])[-self.keep:]
        deltas = [r["latency_delta_ms"] for r in records]
        by_variant: dict[str, dict] = {}
        for r in records:
            v = by_variant.setdefault(r["variant"], {"requests": 0, "rows": 0, "agreeing": 0})
            v["requests"] += 1
            v["rows"] += r["rows"]
            v["agreeing"] += r["agreeing"]
        return {"rows": rows, "agreement": agreeing / rows if rows else None,
                "mean_latency_delta_ms": sum(deltas) / len(deltas) if deltas else None,
                "variants": {k: {**v, "agreement": v["agreeing"] / v["rows"] if v["rows"] else None}
                             for k, v in by_variant.items()},
                "latest": records[-20:]}


class ShadowMirror:
    """Mirrors answered requests to the shadows on a thread of its own: the answer, and the next request, never
    wait for a shadow. A full queue drops the copy (counted), never the request."""

    def __init__(self, metrics, capacity: int = 1000, shared: str | None = None, worker: int = 0):
        self.metrics = metrics
        self.report = ShadowReport(shared=shared, worker=worker)
        self.process = ShadowProcess()
        self.queue: queue.Queue = queue.Queue(maxsize=capacity)
        self.drops = Drops(metrics.shadow_dropped, "shadow mirror",
                           "the shadows' comparison misses those requests (the shadows predict slower than "
                           "requests come)")
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the mirror thread (the app's lifespan does; a first mirrored request too, for an app driven
        without a lifespan, as an ASGI test transport does)."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._forever, name="mlops-shadows", daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        """Mirror what is queued, then end the thread and the shadow process."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            try:
                self.queue.put(_STOP, timeout=timeout)
                thread.join(timeout)
            except queue.Full:  # the thread is stuck on a shadow: it is a daemon, leave it
                pass
        self.process.close()

    def put(self, deployed, frame, values: list, seconds: float) -> None:
        if self._thread is None:
            self.start()
        try:
            self.queue.put_nowait((deployed, frame, values, seconds))
        except queue.Full:
            self.drops.add()

    def _forever(self) -> None:
        while True:
            try:  # with a report not saved yet, wake in time to save it even if no request comes
                batch = [self.queue.get(timeout=SAVE_EVERY if self.report.unsaved else None)]
            except queue.Empty:
                self._save()
                continue
            # wake a few times a second, not once per request: each wake-up takes the GIL from the event loop
            time.sleep(MIRROR_INTERVAL)
            while len(batch) < MIRROR_BATCH:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            stopping = any(item is _STOP for item in batch)
            self._mirror([item for item in batch if item is not _STOP])
            self._save(now=stopping)
            if stopping:
                return

    def _save(self, now: bool = True) -> None:
        try:
            self.report.save(now)
        except OSError:  # the group's folder went with the group: nobody is left to read it
            pass

    def _mirror(self, batch: list[tuple]) -> None:
        """The requests mirrored in the last moment: each shadow predicts all their rows in one call (in the
        shadow process when packaged, see shadow.py), then each request's rows are compared with the primary's
        answer."""
        from .frames import stack

        by_deployment: dict[int, list[tuple]] = {}
        for item in batch:
            by_deployment.setdefault(id(item[0]), []).append(item)
        for items in by_deployment.values():
            deployed = items[0][0]
            frame = stack(deployed.primary, [i[1] for i in items])
            for shadow in deployed.shadows:
                values, seconds, failure = self._predict(shadow, frame)
                offset, share = 0, seconds / max(1, len(frame))  # the batch's time, shared out by rows
                for _, rows, primary_values, primary_seconds in items:
                    mine = values[offset:offset + len(rows)]
                    offset += len(rows)
                    agreeing = sum(a == b for a, b in zip(mine, primary_values))
                    labels = (shadow.name, str(shadow.version))
                    self.metrics.shadow_rows.labels(*labels, "agree").inc(agreeing)
                    self.metrics.shadow_rows.labels(*labels, "disagree").inc(len(primary_values) - agreeing)
                    self.report.add({"variant": shadow.variant, "version": shadow.version,
                                     "rows": len(primary_values), "agreeing": agreeing,
                                     "latency_delta_ms": (share * len(rows) - primary_seconds) * 1000,
                                     "error": failure, "at": time.time()})

    def _predict(self, shadow, frame) -> tuple[list, float, str | None]:
        if shadow.package:
            return self.process.predict(shadow.package, frame, shadow.digest)
        started = time.perf_counter()
        try:
            values, failure = json_ready(shadow.predict(frame)), None
        except Exception as exc:  # a broken shadow is reported, never raised
            values, failure = [], f"{type(exc).__name__}: {exc}"
        return values, time.perf_counter() - started, failure
