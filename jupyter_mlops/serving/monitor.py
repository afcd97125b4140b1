"""Production monitoring: an asynchronous request log, drift against the training data, outlier scores.

The server puts each answered request on a bounded queue and moves on; a writer thread turns them into JSON lines
under `<workspace>/logs/<model>/requests.jsonl`. A full queue drops the record and counts it
(`mlops_request_log_dropped_total`): logging never slows or fails a request. The log is bounded (LogLimits): one
request adds at most `max_request` bytes (a larger one logs its first rows and how many it had), and past
`max_bytes` the file is rotated to `requests.jsonl.1` ... `.keep`, the oldest dropped. A server of several worker
processes gives each its own log (`requests.jsonl`, `requests-1.jsonl`, ...): no two processes append to or rotate
one file. Readers (`monitor`, the panel) read the newest lines backwards, every worker's log merged by time, only as
many as the window needs.

Drift compares a window of recent inputs with the reference statistics saved at registration, feature by feature:
Kolmogorov-Smirnov (numeric, against the reference sample), chi-squared (categorical, against the reference
frequencies) and the population stability index over the reference's quantile bins. With many features, the
p-value threshold is divided by their number (Bonferroni), so same-distribution traffic is not called drift.
An input row's outlier score is its largest |z-score| against the training means and deviations.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
PSI_DRIFT = 0.2  # the usual "significant shift" line
P_VALUE = 0.05
OUTLIER_Z = 6.0


def _plain(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else str(value)


def _dumps(record: dict) -> str:
    """One JSON line; numpy arrays in it written by orjson directly where it can (numbers), else as lists."""
    try:
        import orjson
    except ImportError:
        return json.dumps(record, default=_plain) + "\n"
    try:
        return orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY).decode() + "\n"
    except TypeError:  # an object array (text columns): as plain lists
        return orjson.dumps(record, default=_plain).decode() + "\n"


LOG_NAME = "requests.jsonl"


@dataclass(frozen=True)
class LogLimits:
    max_bytes: int = 64 * 1024 * 1024  # one file of the log; rotated past it (--log-max-bytes)
    keep: int = 4  # rotated files kept beside the current one (--log-keep)
    # what one request may add; a larger one logs its first rows (--log-max-request). 16 KiB: the float formatting
    # of a 1,000-row request's 64 KiB line cost more than its prediction (wine LR: 1.4 ms against 1.3)
    max_request: int = 16 * 1024

    def __post_init__(self):
        if self.max_bytes < 1024 or self.keep < 1 or self.max_request < 256:
            raise ValueError("request log limits: --log-max-bytes at least 1024, --log-keep at least 1, "
                             "--log-max-request at least 256")


def log_name(worker: int = 0) -> str:
    """Worker 0's (or a lone server's) log is requests.jsonl; worker 1's requests-1.jsonl, and so on."""
    return LOG_NAME if worker == 0 else LOG_NAME.replace(".jsonl", f"-{worker}.jsonl")


def log_files(folder: str | Path, name: str = LOG_NAME) -> list[Path]:
    """One log's files, newest first: requests.jsonl, requests.jsonl.1, ..."""
    folder = Path(folder)
    rotated = sorted((p for p in folder.glob(name + ".*") if p.suffix[1:].isdigit()),
                     key=lambda p: int(p.suffix[1:]))
    current = folder / name
    return ([current] if current.exists() else []) + rotated


def log_names(folder: str | Path) -> list[str]:
    """The logs in a folder: one per worker that ever served there."""
    stem = LOG_NAME.removesuffix(".jsonl")
    names = {p.name.split(".jsonl")[0] + ".jsonl" for p in Path(folder).glob(stem + "*.jsonl*")}
    return sorted(n for n in names if n == LOG_NAME or n.removeprefix(stem + "-").removesuffix(".jsonl").isdigit())


class RequestLog:
    def __init__(self, folder: str | Path, capacity: int = 10000, dropped_counter=None, watch=None,
                 limits: LogLimits | None = None, name: str = LOG_NAME, feedback=None):
        """`feedback`: the deployment's FeedbackStore (feedback.py), told each answered request's id and
        predictions on the writer thread, so outcomes sent later can be joined to them."""
        self.limits = limits or LogLimits()
        self.path = Path(folder) / name
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.queue: queue.Queue = queue.Queue(maxsize=capacity)
        from .metrics import Drops

        self.drops = Drops(dropped_counter, f"request log {self.path}",
                           "monitor, live drift and feedback miss those requests (the server is busier than the "
                           "log's thread can write: a slow disk, or every core busy)")
        self.written = 0
        self.watch = watch  # called with each written batch, on the writer thread (live drift metrics)
        self.feedback = feedback
        if feedback is not None:  # an outcome for an answer not yet written asks for it at once
            feedback.wake = self.wake
        self._names: tuple = (None, [])  # the last frame's column Index and its names as strings
        self._stop = threading.Event()
        self._wake = threading.Event()
        self.thread = threading.Thread(target=self._write, name="mlops-request-log", daemon=True)
        self.thread.start()

    def put(self, variant: str, version: int, frame: Any, values: list, seconds: float,
            request_id: str | None = None, columns: Any = None) -> None:
        """Never blocks: a full queue drops the record and counts it. The line is made here, a few tens of
        microseconds: done in bursts on the writer thread instead, it held the GIL long enough to stall requests.
        `frame`: a DataFrame, or a numeric request's array with its `columns` (a pandas Index)."""
        if self.queue.full():
            self.drops.add()
            return
        if hasattr(frame, "columns"):
            array, columns = frame.to_numpy(), frame.columns
        else:
            array = frame
        if self._names[0] is not columns:  # the requests of a numeric model share its column Index
            self._names = (columns, [str(c) for c in columns])
        at = time.time()
        record = {"at": at, "id": request_id, "variant": variant, "version": version, "columns": self._names[1],
                  "inputs": array, "outputs": values, "latency_ms": seconds * 1000}
        rows = len(array)
        if rows > 1:  # only the rows that can fit are written out: a 1,000-row request was dumped whole, then cut
            per_row = len(_dumps({"inputs": array[:1], "outputs": values[:1]}))
            if per_row * rows > self.limits.max_request:
                keep = max(0, self.limits.max_request // per_row - 1)
                record.update(inputs=array[:keep], outputs=values[:keep], rows=rows, truncated=True)
        line = _dumps(record)
        if len(line) > self.limits.max_request:
            line = self._shortened(record, len(line))
        try:
            # only an array and a string wait in the queue: hundreds of queued DataFrames made the garbage
            # collector's full passes long enough to stall requests
            self.queue.put_nowait((variant, version, array, (request_id, at, values), line))
        except queue.Full:
            self.drops.add()

    def _shortened(self, record: dict, size: int) -> str:
        """A line within `max_request`: the request's first rows (as many as fit) and how many it had."""
        rows = len(record["inputs"])
        keep = max(0, int(rows * self.limits.max_request / size) - 1)
        record.update(rows=record.get("rows", rows), truncated=True)
        while True:
            record["inputs"], record["outputs"] = record["inputs"][:keep], record["outputs"][:keep]
            line = _dumps(record)
            if len(line) <= self.limits.max_request or keep == 0:
                return line if len(line) <= self.limits.max_request else _dumps(
                    {k: v for k, v in record.items() if k not in ("columns", "inputs", "outputs")})
            keep //= 2

    def _rotate(self, f):
        """requests.jsonl becomes .1, .1 becomes .2, ...; the oldest past `keep` is dropped."""
        f.close()
        for i in range(self.limits.keep - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        return open(self.path, "a", encoding="utf-8")

    def _write(self) -> None:
        f = open(self.path, "a", encoding="utf-8")
        try:
            while not (self._stop.is_set() and self.queue.empty()):
                # wake a few times a second and write what has gathered: one burst instead of work per request
                self._wake.wait(0.2)
                self._wake.clear()
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    continue
                batch = [item]
                while len(batch) < 5000:
                    try:
                        batch.append(self.queue.get_nowait())
                    except queue.Empty:
                        break
                pending, size = [], f.tell()
                for item in batch:  # rotated at a line's boundary as soon as the next line would pass the limit
                    if size and size + len(item[-1]) > self.limits.max_bytes:
                        f.write("".join(pending))
                        f, pending, size = self._rotate(f), [], 0
                    pending.append(item[-1])
                    size += len(item[-1])
                f.write("".join(pending))
                f.flush()
                if self.feedback is not None:
                    try:
                        self.feedback.record([(i, at, item[0], item[1], values) for item in batch
                                              for i, at, values in (item[3],) if i])
                    except Exception as exc:  # the log itself is written; feedback on these ids will say unknown
                        log.warning("request ids not recorded for feedback: %s", exc)
                if self.watch is not None:
                    try:
                        self.watch(batch)
                    except Exception:  # metrics are best effort; the log itself is written
                        pass
                self.written += len(batch)
        finally:
            f.close()

    @property
    def dropped(self) -> int:
        return self.drops.total

    def wake(self) -> None:
        """Write what has gathered now rather than at the next turn."""
        self._wake.set()

    def close(self, timeout: float = 10) -> None:
        self._stop.set()
        self._wake.set()
        self.thread.join(timeout)


DRIFT_MIN_ROWS = 200  # rows before the live PSI gauges are first set


class DriftWatch:
    """Live drift and outlier metrics from the logged primary requests, cheap enough to run beside serving: each
    batch is scored for outliers with array arithmetic, and every `every` seconds the PSI of each numeric feature
    over the latest `window` rows goes to Prometheus (features above 0.2 count as drifted). The statistical tests
    (KS, chi-squared) are for `jupyter-mlops monitor`, off the serving path."""

    def __init__(self, metrics, current_primary, window: int = 1000, every: float = 5.0):
        self.metrics, self.current_primary, self.window, self.every = metrics, current_primary, window, every
        self.rows = None
        self.last = 0.0
        self._prepared_for = None

    def _prepare(self, model) -> None:
        import numpy as np

        columns = model.reference["columns"]
        self.index = [i for i, c in enumerate(model.columns) if columns.get(c, {}).get("kind") == "numeric"]
        self.every_column = self.index == list(range(len(model.columns)))
        stats_ = [columns[model.columns[i]] for i in self.index]
        means = np.array([s["mean"] or 0.0 for s in stats_])
        stds = np.array([s["std"] or 0.0 for s in stats_])
        # an outlier row has a value more than OUTLIER_Z deviations from its feature's mean: two comparisons per
        # value against bounds made once (a feature that never varied in training has none)
        self.high = np.where(stds > 0, means + OUTLIER_Z * stds, np.inf)
        self.low = np.where(stds > 0, means - OUTLIER_Z * stds, -np.inf)
        self.edges = [s["bin_edges"] for s in stats_]
        self.fractions = [s["bin_fractions"] for s in stats_]
        self.rows = None
        self._prepared_for = (model.name, model.version)

    def __call__(self, batch: list) -> None:
        import numpy as np

        model = self.current_primary()
        if not model.reference:
            return
        if self._prepared_for != (model.name, model.version):
            self._prepare(model)
        arrays = [item[2] for item in batch if item[0] == "primary" and item[1] == model.version]
        if not arrays or not self.index:
            return
        if len(arrays) > 1 and sum(map(len, arrays)) < 64 * len(arrays):
            arrays = [np.vstack(arrays)]  # small requests scored together; large ones each as it is, not copied
        outliers, recent = 0, []
        for fresh in arrays:
            if not (self.every_column and fresh.dtype == float):  # text columns beside: the numeric ones, as floats
                fresh = fresh[:, self.index].astype(float)
            outside = fresh > self.high
            outside |= fresh < self.low
            if outside.any():  # rare: rows are counted only then
                outliers += int(outside.any(axis=1).sum())
            recent.append(fresh)
        self.metrics.outliers.labels(model.name, str(model.version)).inc(outliers)
        self.rows = _latest(([] if self.rows is None else [self.rows]) + recent, self.window)  # the PSI window
        # the PSI of a handful of rows is noise (the first batch logged may hold one request): wait for enough
        if len(self.rows) < min(self.window, DRIFT_MIN_ROWS) or time.monotonic() - self.last < self.every:
            return
        self.last = time.monotonic()
        drifted = 0
        for j, i in enumerate(self.index):
            psi = _psi({"bin_edges": self.edges[j], "bin_fractions": self.fractions[j]}, self.rows[:, j])
            drifted += psi > PSI_DRIFT
            self.metrics.psi.labels(model.name, str(model.version), model.columns[i]).set(psi)
        self.metrics.drifted.labels(model.name, str(model.version)).set(drifted)


def _latest(arrays: list, rows: int):
    """The last `rows` rows of arrays stacked in order, copying no more than those."""
    import numpy as np

    tail, count = [], 0
    for array in reversed(arrays):
        tail.append(array[-(rows - count):])
        count += len(tail[-1])
        if count >= rows:
            break
    return np.vstack(tail[::-1])


def _lines_backwards(path: Path, block: int = 1 << 20):
    """A file's lines, last first, reading `block` bytes at a time from the end."""
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        partial = b""
        while end > 0:
            start = max(0, end - block)
            f.seek(start)
            lines = (f.read(end - start) + partial).split(b"\n")
            end = start
            partial = lines.pop(0) if start > 0 else b""  # may begin mid-line: completed by the next block
            for line in reversed(lines):
                if line.strip():
                    yield line


def _records_backwards(files: list[Path]):
    for path in files:
        for line in _lines_backwards(path):
            try:
                yield json.loads(line)
            except ValueError:
                continue


def recent_records(folder: str | Path):
    """The logged requests, newest first, across rotated files and every worker's log (merged by time); a line
    cut by a crash is passed over."""
    import heapq

    streams = [_records_backwards(log_files(folder, name)) for name in log_names(folder)]
    if len(streams) == 1:
        yield from streams[0]
    else:
        yield from heapq.merge(*streams, key=lambda record: -record.get("at", 0))


def traffic(folder: str | Path, window: int = 5000, buckets: int = 30) -> list[dict]:
    """The latest `window` logged requests over time: per time bucket and variant, requests per second, p50 and p99
    latency (ms) and the variant's share of the bucket's requests; oldest bucket first."""
    import numpy as np

    records = []
    for record in recent_records(folder):
        if len(records) >= window:
            break
        if "at" in record and "latency_ms" in record:
            records.append((record["at"], record.get("variant", "primary"), record["latency_ms"]))
    if not records:
        return []
    first, last = records[-1][0], records[0][0]
    width = max((last - first) / buckets, 1.0)  # at least a second per bucket: requests per second stay honest
    grouped: dict[tuple[int, str], list[float]] = {}
    for at, variant, latency in records:
        grouped.setdefault((min(int((at - first) / width), buckets - 1), variant), []).append(latency)
    totals: dict[int, int] = {}
    for (bucket, _), latencies in grouped.items():
        totals[bucket] = totals.get(bucket, 0) + len(latencies)
    series = []
    for (bucket, variant), latencies in sorted(grouped.items()):
        p50, p99 = np.percentile(latencies, [50, 99])
        series.append({"time": round((first + bucket * width) * 1000), "variant": variant,
                       "requests": len(latencies), "rps": len(latencies) / width, "p50": float(p50),
                       "p99": float(p99), "share": len(latencies) / totals[bucket]})
    return series


_counted: dict[str, tuple[int, bytes, int, int]] = {}  # path -> (inode, first bytes, bytes counted, newlines)


def count_requests(folder: str | Path) -> int:
    """Requests in the kept log files, counted in a stream (newlines), without parsing them. The panel asks on
    every poll: a file's count is kept and only the bytes appended since are read (rotated files never change)."""
    count = 0
    for path in (path for name in log_names(folder) for path in log_files(folder, name)):
        stat = path.stat()
        inode, head, counted, lines = _counted.get(str(path), (None, b"", 0, 0))
        with open(path, "rb") as f:
            # a new file under this name: count it afresh. The inode alone cannot tell (a rotated-away file's inode
            # is reused for the next one), so its first line's start, which holds a timestamp, must match too
            first = f.read(64)
            if inode != stat.st_ino or head != first or counted > stat.st_size:
                counted, lines = 0, 0
            f.seek(counted)
            while chunk := f.read(1 << 20):
                lines += chunk.count(b"\n")
                counted += len(chunk)
        _counted[str(path)] = (stat.st_ino, first, counted, lines)
        count += lines
    return count


def read_log(folder: str | Path, limit: int | None = None) -> list[dict]:
    """The latest `limit` logged requests (all kept ones without a limit), oldest first."""
    records = []
    for record in recent_records(folder):
        if limit is not None and len(records) >= limit:
            break
        records.append(record)
    return records[::-1]


def _live_fractions(edges: list, values):
    """The share of `values` in each of the training data's bins (beyond the edges: in the outer bins)."""
    import numpy as np

    return np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)[0] / max(len(values), 1)


def _psi(reference: dict, values, live=None) -> float:
    """The population stability index of `values` (or of their bin shares `live`, when known) against the
    training data's bins."""
    import numpy as np

    edges, expected = reference["bin_edges"], np.asarray(reference["bin_fractions"], dtype=float)
    if len(edges) < 2:
        return 0.0
    actual = _live_fractions(edges, values) if live is None else live
    eps = 1e-4
    expected, actual = np.clip(expected, eps, None), np.clip(actual, eps, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def drift(reference: dict, columns: list[str], rows: list[list]) -> dict:
    """Per feature: test, statistic, p-value, PSI, drifted; over the given window of input rows."""
    import numpy as np
    from scipy import stats

    features = reference.get("columns", {})
    window = {c: [r[i] for r in rows] for i, c in enumerate(columns)}
    threshold = P_VALUE / max(len(features), 1)
    report = {}
    for name, ref in features.items():
        if name not in window or not rows:
            continue
        if ref["kind"] == "numeric":
            values = np.asarray(window[name], dtype=float)
            sample = np.asarray(ref["sample"], dtype=float)
            if len(sample) and (np.ptp(sample) > 0 or np.ptp(values) > 0):
                statistic, p_value = stats.ks_2samp(values, sample)
            else:  # a constant feature: drift only if the constant moved
                statistic = float(abs(values.mean() - (ref["mean"] or 0)) > 1e-12)
                p_value = 0.0 if statistic else 1.0
            live = _live_fractions(ref["bin_edges"], values) if len(ref["bin_edges"]) >= 2 else None
            psi = _psi(ref, values, live)
            report[name] = {"test": "ks", "statistic": float(statistic), "p_value": float(p_value), "psi": psi,
                            "drifted": bool(p_value < threshold or psi > PSI_DRIFT),
                            "histogram": _numeric_histogram(ref, live)}
        else:
            freq = ref["frequencies"]
            categories = list(freq)
            counts = [sum(1 for v in window[name] if str(v) == c) for c in categories]
            other = len(rows) - sum(counts)
            observed = np.asarray(counts + [other], dtype=float)
            expected = np.asarray([freq[c] for c in categories] + [0.0]) * len(rows)
            expected = np.clip(expected, 1e-6, None)
            expected *= observed.sum() / expected.sum()
            statistic, p_value = stats.chisquare(observed, expected)
            report[name] = {"test": "chi2", "statistic": float(statistic), "p_value": float(p_value), "psi": None,
                            "drifted": bool(p_value < threshold),
                            "histogram": _category_histogram(freq, counts, other, len(rows))}
    return report


def drift_rule(features: int) -> str:
    """The drift rule in words, as `drift` applies it to this many features."""
    return (f"a feature has drifted when its two-sample test (Kolmogorov-Smirnov for numbers, chi-squared for "
            f"categories) gives p < {P_VALUE} / {max(features, 1)} features = {P_VALUE / max(features, 1):.2g} "
            f"(Bonferroni), or when its PSI against the training data's bins is above {PSI_DRIFT}")


def _numeric_histogram(reference: dict, live) -> list[dict]:
    """The training data's share of rows per bin beside the live share `live` (as the PSI counts them)."""
    edges = reference["bin_edges"]
    if live is None:
        return []
    return [{"bin": f"{edges[i]:.3g}-{edges[i + 1]:.3g}", "order": i, "training": float(reference["bin_fractions"][i]),
             "live": float(live[i])} for i in range(len(edges) - 1)]


def _category_histogram(frequencies: dict, counts: list[int], other: int, rows: int) -> list[dict]:
    """The training data's share per category beside the live share; categories it never saw as `(unseen)`."""
    bins = [{"bin": str(c), "order": i, "training": float(frequencies[c]), "live": counts[i] / max(rows, 1)}
            for i, c in enumerate(frequencies)]
    if other:
        bins.append({"bin": "(unseen)", "order": len(bins), "training": 0.0, "live": other / max(rows, 1)})
    return bins


def outlier_scores(reference: dict, columns: list[str], rows: list[list]) -> list[float]:
    """Per row: the largest |z-score| of its numeric features against the training data."""
    scores = []
    stats_of = [(i, reference["columns"].get(c)) for i, c in enumerate(columns)]
    usable = [(i, s["mean"], s["std"]) for i, s in stats_of if s and s["kind"] == "numeric" and s["std"]]
    for row in rows:
        scores.append(max((abs((float(row[i]) - mean) / std) for i, mean, std in usable), default=0.0))
    return scores


def report(package: str | Path, log_folder: str | Path, window: int = 1000) -> dict:
    """Drift, outliers and shadow agreement over the latest `window` logged requests of a model."""
    reference = json.loads((Path(package) / "reference.json").read_text())
    rows, columns, latencies = [], None, []
    for record in recent_records(log_folder):  # only as much of the log as the window needs
        if len(rows) >= window:
            break
        if not record.get("inputs"):
            continue
        columns = columns or record["columns"]
        rows.extend(reversed(record["inputs"]))
        latencies.append(record["latency_ms"])
    rows = rows[:window]
    features = drift(reference, columns or [], rows) if rows else {}
    features = dict(sorted(features.items(), key=lambda kv: (not kv[1]["drifted"], -(kv[1]["psi"] or 0), kv[0])))
    scores = outlier_scores(reference, columns or [], rows) if rows else []
    return {"requests": count_requests(log_folder), "window_rows": len(rows),
            "drift_rule": drift_rule(len(reference.get("columns", {}))),
            "drifted_features": sorted(n for n, f in features.items() if f["drifted"]),
            "features": features, "outliers": sum(s > OUTLIER_Z for s in scores),
            "max_outlier_score": max(scores, default=0.0),
            "latency_ms_p50": sorted(latencies)[len(latencies) // 2] if latencies else None,
            "reference_rows": reference.get("rows")}
