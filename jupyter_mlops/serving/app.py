"""The model server: an ASGI app (Starlette) speaking the protocols clients already use.

- Open Inference Protocol v2 (KServe, Triton, Seldon): `/v2/health/live`, `/v2/health/ready`, `/v2/models/{name}`,
  `/v2/models/{name}/ready`, `POST /v2/models/{name}/infer` with one 2-D tensor or one input per column;
- MLflow's scoring server: `POST /invocations` (`dataframe_split`, `dataframe_records`, `instances`, `inputs`) and
  `GET /ping`;
- `/metrics` for Prometheus: requests by model, version, variant and status code, request and predict latency
  histograms, requests in flight.

Every client mistake is a 4xx with a JSON body naming the problem; `predict` gets a pandas DataFrame with the
training columns, in order. `predict` runs on the event loop: a worker thread hop would cost more than most
predictions, and one process serves one model. Shadows run on a thread of their own, fed through a bounded queue.
"""
from __future__ import annotations

import asyncio
import collections
import json
import queue
import random
import threading
import time
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .predictions import json_ready
from .shadow import ShadowProcess


class ClientError(Exception):
    """A request the client must fix: answered 4xx with the message."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class ServedModel:
    name: str
    version: int
    predict: Callable
    schema: list[dict]  # [{"name", "type", "kind"}]
    variant: str = "primary"
    reference: dict | None = None  # statistics of the training inputs, for drift and outliers
    package: str | None = None  # where it was loaded from: a shadow is loaded again there, in its own process
    digest: str | None = None  # predict.pkl's sha256 as registered: checked again wherever it is loaded
    columns: list[str] = field(init=False)
    numeric_only: bool = field(init=False)
    nullable: Any = field(init=False)  # per column: may it be null/NaN (the training data had missing values)

    def __post_init__(self):
        import numpy as np

        self.columns = [c["name"] for c in self.schema]
        self.numeric_only = all(c.get("kind") == "numeric" for c in self.schema)
        seen_missing = (self.reference or {}).get("columns", {})  # packages from before `nullable` was recorded
        self.nullable = np.array([bool(c.get("nullable", seen_missing.get(c["name"], {}).get("missing")))
                                  for c in self.schema], dtype=bool)

    @classmethod
    def from_package(cls, name: str, version: int, package: str | Path, variant: str = "primary",
                     digest: str | None = None):
        from ..registry import load_predict

        schema = json.loads((Path(package) / "schema.json").read_text())
        reference_file = Path(package) / "reference.json"
        reference = json.loads(reference_file.read_text()) if reference_file.exists() else None
        return cls(name, version, load_predict(package, digest), schema, variant, reference, str(package), digest)


# -- request decoding ---------------------------------------------------------------------------------------------
_OIP_NUMERIC = {"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32",
                "FP64"}


def _frame(model: ServedModel, rows: Any = None, columns: dict[str, list] | None = None):
    """A DataFrame in the model's column order, from rows (lists or dicts) or from columns; checks names, widths
    and values. When every column is numeric (the usual case) the values go through one float array: building
    the frame column by column would cost more than most predictions."""
    import pandas as pd

    expected = model.columns
    numeric_only = bool(expected) and model.numeric_only
    if columns is not None:
        missing = [c for c in expected if c not in columns]
        extra = [c for c in columns if c not in expected]
        if expected and (missing or extra):
            raise ClientError(_column_message(missing, extra, expected))
        if len({len(v) if isinstance(v, list) else -1 for v in columns.values()}) > 1:
            raise ClientError("columns have different lengths; send one value per row in each")
        names = expected or list(columns)
        table = [columns[c] for c in names]
        if numeric_only:
            return _numeric_frame(model, table, transpose=True)
        frame = pd.DataFrame(dict(zip(names, table)), columns=names)
    else:
        if not isinstance(rows, list) or not rows:
            raise ClientError("no rows: send at least one row of inputs")
        if all(isinstance(r, dict) for r in rows):
            keys = set().union(*rows)
            missing = [c for c in expected if c not in keys]
            extra = sorted(map(str, keys - set(expected))) if expected else []
            if missing or extra:
                raise ClientError(_column_message(missing, extra, expected))
            if numeric_only:
                return _numeric_frame(model, [[r.get(c) for c in expected] for r in rows])
            frame = pd.DataFrame.from_records(rows, columns=expected)
        else:
            if all(not isinstance(r, (list, tuple)) for r in rows):
                rows = [rows]  # one row given flat
            widths = {len(r) if isinstance(r, (list, tuple)) else -1 for r in rows}
            if -1 in widths or len(widths) > 1 or (expected and widths != {len(expected)}):
                shown = ", ".join(expected[:5]) + (", ..." if len(expected) > 5 else "")
                want = f"{len(expected)} values per row ({shown})" if expected else "rows of equal length"
                got = sorted(w for w in widths if w >= 0) or "no lists"
                raise ClientError(f"wrong shape: got rows of {got} values; the model takes {want}")
            if numeric_only:
                return _numeric_frame(model, rows)
            frame = pd.DataFrame(rows, columns=expected or None)
    numeric = [i for i, c in enumerate(model.schema) if c.get("kind") == "numeric"]
    for i in numeric:
        column = model.columns[i]
        try:
            frame[column] = frame[column].astype(float)
        except (TypeError, ValueError):
            raise ClientError(f"column `{column}` must be numeric; got {frame[column].tolist()[:3]}") from None
    if numeric:
        _check_finite(model, frame[[model.columns[i] for i in numeric]].to_numpy(), numeric)
    return frame


def _check_finite(model: ServedModel, array, columns: list[int] | None = None) -> None:
    """Infinity is refused everywhere; null/NaN only in columns whose training data had none (a model fitted
    with missing values, e.g. behind an imputer, gets NaN for them)."""
    import numpy as np

    bad = ~np.isfinite(array)
    if not bad.any():
        return
    nullable = model.nullable if columns is None else model.nullable[columns]
    bad &= ~(np.isnan(array) & nullable)
    if bad.any():
        position = int(np.argwhere(bad)[0][1])
        index = position if columns is None else columns[position]
        name = model.columns[index]
        if model.nullable[index]:
            raise ClientError(f"column `{name}` has an infinite value; send a number, or null when it is unknown")
        raise ClientError(f"column `{name}` has a missing or infinite value (null, NaN, Infinity); send a finite "
                          "number for every row (its training data had no missing values)")


def _float_array(values: list):
    """`values` as a float array, or None when some are not numbers (the caller then names the culprit)."""
    import numpy as np

    try:
        return np.array(values, dtype=float)
    except (TypeError, ValueError):
        return None


def _numeric_frame(model: ServedModel, table: list, transpose: bool = False):
    import pandas as pd

    array = _float_array(table)
    if array is None or array.ndim != 2:
        for i, column in enumerate(model.columns):  # the slow path, only to name the culprit
            values = table[i] if transpose else [row[i] for row in table]
            if any(isinstance(v, (bool, list, dict, str)) or not (_is_float(v) or v is None) for v in values):
                raise ClientError(f"column `{column}` must be numeric; got {values[:3]}")
        raise ClientError("inputs must be numbers, one per column")
    if transpose:
        array = array.T
    _check_finite(model, array)
    return pd.DataFrame(array, columns=model.columns, copy=False)


def _stack(model: ServedModel, frames: list):
    """Several requests' frames as one (rows in order), cheaply when every column is numeric."""
    if len(frames) == 1:
        return frames[0]
    import numpy as np
    import pandas as pd

    if model.numeric_only and model.columns:
        return pd.DataFrame(np.vstack([f.to_numpy() for f in frames]), columns=model.columns, copy=False)
    return pd.concat(frames, ignore_index=True)


def _is_float(value: Any) -> bool:
    try:
        float(value)
        return value is not None
    except (TypeError, ValueError):
        return False


def _column_message(missing: list, extra: list, expected: list) -> str:
    parts = []
    if missing:
        parts.append(f"missing column(s) {', '.join(map(str, missing[:10]))}")
    if extra:
        parts.append(f"unknown column(s) {', '.join(map(str, extra[:10]))}")
    return "; ".join(parts) + f"; the model takes {len(expected)} columns: {', '.join(expected[:10])}" + \
        (", ..." if len(expected) > 10 else "")


def decode_oip(model: ServedModel, body: Any):
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list) or not body["inputs"]:
        raise ClientError('an inference request needs "inputs": a list of tensors, each with "name", "shape", '
                          '"datatype" and "data"')
    tensors = body["inputs"]
    for t in tensors:
        if not isinstance(t, dict) or not {"name", "shape", "datatype", "data"} <= set(t):
            raise ClientError('each input needs "name", "shape", "datatype" and "data"')
        if not isinstance(t["name"], str):
            raise ClientError(f'an input\'s "name" must be a string (a column name or any tensor name), got '
                              f'{type(t["name"]).__name__}')
        # every size at least 1: a 0 anywhere makes the product 0 whatever the others claim, so an empty "data"
        # would pass the size check and [10**12, 0] would have us build 10**12 empty rows
        if not isinstance(t["shape"], list) or not all(type(d) is int and d >= 1 for d in t["shape"]):
            raise ClientError(f'input `{t["name"]}`: "shape" must be a list of sizes of at least 1, e.g. [2, 64]')
        if not isinstance(t["datatype"], str) or t["datatype"] not in _OIP_NUMERIC | {"BYTES"}:
            raise ClientError(f'input `{t["name"]}`: unknown datatype {t["datatype"]!r}')
        if not isinstance(t["data"], list):
            raise ClientError(f'input `{t["name"]}`: "data" must be a list')
    flat = [_flatten(t["data"]) for t in tensors]
    for t, values in zip(tensors, flat):
        size = 1
        for d in t["shape"]:
            size *= d
        if size != len(values):
            raise ClientError(f'input `{t["name"]}`: shape {t["shape"]} holds {size} values but "data" has '
                              f"{len(values)}")
    if len(tensors) == 1 and len(tensors[0]["shape"]) == 2:  # one 2-D tensor: rows x columns
        rows, width = tensors[0]["shape"]
        values = flat[0]
        if model.numeric_only and width == len(model.columns):  # reshaped by numpy, not sliced row by row
            array = _float_array(values)
            if array is not None:
                array = array.reshape(rows, width)
                _check_finite(model, array)
                import pandas as pd

                return pd.DataFrame(array, columns=model.columns, copy=False)
        return _frame(model, rows=[values[i * width:(i + 1) * width] for i in range(rows)])
    for t in tensors:
        if len(t["shape"]) > 2 or (len(t["shape"]) == 2 and t["shape"][1] != 1):
            raise ClientError(f'input `{t["name"]}`: send one 2-D tensor [rows, columns], or one input per column '
                              "with shape [rows]")
    return _frame(model, columns={t["name"]: v for t, v in zip(tensors, flat)})


def _flatten(data: list) -> list:
    out: list = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def decode_mlflow(model: ServedModel, body: Any):
    if not isinstance(body, dict):
        raise ClientError('send a JSON object with one of "dataframe_split", "dataframe_records", "instances" or '
                          '"inputs" (MLflow\'s formats)')
    keys = [k for k in ("dataframe_split", "dataframe_records", "instances", "inputs") if k in body]
    if len(keys) != 1:
        raise ClientError('send exactly one of "dataframe_split", "dataframe_records", "instances" or "inputs"')
    value = body[keys[0]]
    if keys[0] == "dataframe_split":
        if not isinstance(value, dict) or not isinstance(value.get("data"), list):
            raise ClientError('"dataframe_split" needs "columns" and "data" (a list of rows)')
        columns = value.get("columns")
        if columns is not None:
            if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns) or \
                    not all(isinstance(r, list) for r in value["data"]):
                raise ClientError('"dataframe_split": "columns" is a list of names (strings) and "data" a list of '
                                  'rows')
            if any(len(r) != len(columns) for r in value["data"]):
                raise ClientError(f'"dataframe_split": every row needs {len(columns)} values, one per column')
            if columns == model.columns:
                return _frame(model, rows=value["data"])
            return _frame(model, rows=[dict(zip(columns, r)) for r in value["data"]])
        return _frame(model, rows=value["data"])
    if isinstance(value, dict):  # {"col": [values...]}
        if not all(isinstance(v, list) for v in value.values()):
            raise ClientError(f'"{keys[0]}" as an object maps each column to a list of values')
        return _frame(model, columns=value)
    return _frame(model, rows=value)


# -- the app ------------------------------------------------------------------------------------------------------
def _datatype(values: list) -> str:
    if values and all(isinstance(v, bool) for v in values):
        return "BOOL"
    if values and all(isinstance(v, int) for v in values):
        return "INT64"
    if values and all(isinstance(v, (int, float)) for v in values):
        return "FP64"
    return "BYTES"


def _json_loader():
    """orjson when installed (several times faster on arrays of numbers), else the standard library."""
    try:
        import orjson

        return orjson.loads
    except ImportError:
        return json.loads


@dataclass
class Deployment:
    """What one server answers with: a primary, canaries taking a share of traffic (percent), and shadows that get
    a mirrored copy of each request after the answer has gone out. With `sticky_header`, the header's value picks
    the variant by hash, so one user stays on one variant (A-B); without it, each request is drawn at random."""

    primary: ServedModel
    canaries: list[tuple[ServedModel, float]] = field(default_factory=list)
    shadows: list[ServedModel] = field(default_factory=list)
    sticky_header: str | None = None

    def __post_init__(self):
        total = sum(w for _, w in self.canaries)
        if any(w <= 0 for _, w in self.canaries) or total >= 100:
            raise ValueError(f"canary weights must be above 0 and add up to less than 100 (got {total:g})")

    @property
    def name(self) -> str:
        return self.primary.name

    def route(self, headers) -> ServedModel:
        if not self.canaries:
            return self.primary
        key = headers.get(self.sticky_header) if self.sticky_header else None
        bucket = (zlib.crc32(key.encode()) % 10000) / 100 if key is not None else random.random() * 100
        edge = 0.0
        for model, weight in self.canaries:
            edge += weight
            if bucket < edge:
                return model
        return self.primary


class LiveDeployment:
    """The deployment a running server answers with; `swap` replaces it between requests (promote, rollback,
    new canary weight) while requests already in flight finish on the one they started with."""

    def __init__(self, deployment: Deployment):
        self.current = deployment

    def swap(self, deployment: Deployment) -> None:
        if deployment.name != self.current.name:
            raise ValueError(f"this server serves `{self.current.name}`, not `{deployment.name}`")
        self.current = deployment


class ShadowReport:
    """Mirrored answers compared with the primary's: agreement per row and latency difference, the latest kept."""

    def __init__(self, keep: int = 1000):
        self.records: collections.deque = collections.deque(maxlen=keep)
        self.rows = self.agreeing = 0
        self._lock = threading.Lock()

    def add(self, record: dict) -> None:
        with self._lock:
            self.records.append(record)
            self.rows += record["rows"]
            self.agreeing += record["agreeing"]

    def summary(self) -> dict:
        with self._lock:
            deltas = [r["latency_delta_ms"] for r in self.records]
            by_variant: dict[str, dict] = {}
            for r in self.records:
                v = by_variant.setdefault(r["variant"], {"requests": 0, "rows": 0, "agreeing": 0})
                v["requests"] += 1
                v["rows"] += r["rows"]
                v["agreeing"] += r["agreeing"]
            return {"rows": self.rows, "agreement": self.agreeing / self.rows if self.rows else None,
                    "mean_latency_delta_ms": sum(deltas) / len(deltas) if deltas else None,
                    "variants": {k: {**v, "agreement": v["agreeing"] / v["rows"] if v["rows"] else None}
                                 for k, v in by_variant.items()},
                    "latest": list(self.records)[-20:]}


MIRROR_INTERVAL = 0.05  # seconds the mirror thread gathers requests before the shadows predict them together
MIRROR_BATCH = 500


def create_app(target: ServedModel | Deployment, registry_metrics=None, log_folder: str | Path | None = None,
               log_capacity: int = 10000, limits=None, log_limits=None) -> Starlette:
    """The app for one model or deployment; with `log_folder`, every answered request is logged asynchronously
    (see monitor.py) and `app.state.request_log` is the log. `limits` (a ServerLimits) bounds what one request
    may cost; `log_limits` (a LogLimits) how much the request log may keep."""
    from .limits import ServerLimits, describe_size
    from .metrics import ServerMetrics

    limits = limits or ServerLimits()
    live = LiveDeployment(target if isinstance(target, Deployment) else Deployment(target))
    name = live.current.name
    metrics = registry_metrics or ServerMetrics()
    shadows = ShadowReport()
    loads = _json_loader()
    request_log = None
    if log_folder is not None:
        from .monitor import DriftWatch, RequestLog

        request_log = RequestLog(log_folder, log_capacity, metrics.log_dropped,
                                 watch=DriftWatch(metrics, lambda: live.current.primary), limits=log_limits)

    def error(message: str, status: int) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    def too_large(size: int, exact: bool) -> ClientError:
        return ClientError(f"the body is {'' if exact else 'over '}{size:,} bytes; this server takes at most "
                           f"{describe_size(limits.max_body)} per request (--max-body): send fewer rows per request, "
                           "or start the server with a larger --max-body", 413)

    async def read_body(request: Request) -> bytes:
        """The body, refused with a 413 as soon as it is known to be too large: from Content-Length before
        anything is read, else (chunked) once the bytes read pass the limit."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limits.max_body:
            raise too_large(int(declared), True)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limits.max_body:
                raise too_large(limits.max_body, False)
            chunks.append(chunk)
        return b"".join(chunks)

    def parse(raw: bytes) -> Any:
        try:
            return loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ClientError(f"the body is not valid JSON ({exc})") from None
        except RecursionError:  # the standard library's decoder on deeply nested arrays
            raise ClientError("the body's JSON is nested too deeply; send rows as a list of lists of values") \
                from None

    async def decoded(request: Request, model: ServedModel, decode: Callable) -> tuple[Any, Any]:
        """The body and the frame decoded from it; a large body on a worker thread, so the event loop goes on
        answering other requests meanwhile."""
        raw = await read_body(request)

        def work() -> tuple[Any, Any]:
            body = parse(raw)
            return body, decode(model, body)

        if len(raw) > limits.offload_above:
            return await asyncio.to_thread(work)
        return work()

    def predict(model: ServedModel, frame) -> list:
        started = time.perf_counter()
        try:
            result = json_ready(model.predict(frame))
        finally:
            metrics.predict_timer(model.name, str(model.version)).observe(time.perf_counter() - started)
        if len(result) != len(frame):
            raise RuntimeError(f"predict returned {len(result)} values for {len(frame)} rows")
        return result

    def mirror(batch: list[tuple]) -> None:
        """Runs after the answers were sent, for the requests mirrored in the last moment: each shadow predicts
        all their rows in one call (in the shadow process when packaged, see shadow.py), then each request's rows
        are compared with the primary's answer. Shadows never change or delay the primary's responses."""
        import pandas as pd

        by_deployment: dict[int, list[tuple]] = {}
        for item in batch:
            by_deployment.setdefault(id(item[0]), []).append(item)
        for items in by_deployment.values():
            deployed = items[0][0]
            frame = items[0][1] if len(items) == 1 else pd.concat([i[1] for i in items], ignore_index=True)
            for shadow in deployed.shadows:
                if shadow.package:
                    values, seconds, failure = shadow_process.predict(shadow.package, frame, shadow.digest)
                else:
                    started = time.perf_counter()
                    try:
                        values, failure = json_ready(shadow.predict(frame)), None
                    except Exception as exc:  # a broken shadow is reported, never raised
                        values, failure = [], f"{type(exc).__name__}: {exc}"
                    seconds = time.perf_counter() - started
                offset, share = 0, seconds / max(1, len(frame))  # the batch's time, shared out by rows
                for _, rows, primary_values, primary_seconds in items:
                    mine = values[offset:offset + len(rows)]
                    offset += len(rows)
                    agreeing = sum(a == b for a, b in zip(mine, primary_values))
                    labels = (shadow.name, str(shadow.version))
                    metrics.shadow_rows.labels(*labels, "agree").inc(agreeing)
                    metrics.shadow_rows.labels(*labels, "disagree").inc(len(primary_values) - agreeing)
                    shadows.add({"variant": shadow.variant, "version": shadow.version, "rows": len(primary_values),
                                 "agreeing": agreeing,
                                 "latency_delta_ms": (share * len(rows) - primary_seconds) * 1000,
                                 "error": failure, "at": time.time()})

    waiting: dict[int, list] = {}  # per model: the requests that will be predicted together next

    async def answer(deployed: Deployment, model: ServedModel, frame) -> list:
        """Predict a request's rows. Requests for the same model that arrive while the event loop is busy (with
        the previous prediction) are predicted in one call: per-call costs (input validation in scikit-learn and
        the like) are paid once per batch, not per request. Alone, a request is predicted on the next turn of
        the loop, so nothing waits for company."""
        future = asyncio.get_running_loop().create_future()
        batch = waiting.get(id(model))
        if batch is None:
            batch = waiting[id(model)] = []
            asyncio.get_running_loop().call_soon(predict_waiting, model)
        batch.append((frame, future))
        values, seconds = await future
        if request_log is not None:
            request_log.put(model.variant, model.version, frame, values, seconds)
        if deployed.shadows and model is deployed.primary:
            try:  # mirrored on a thread of its own: the answer, and the next request, never wait for shadows
                mirrors.put_nowait((deployed, frame, values, seconds))
            except queue.Full:
                metrics.shadow_dropped.inc()
        return values

    def predict_waiting(model: ServedModel) -> None:
        batch = waiting.pop(id(model))
        started = time.perf_counter()
        try:
            values = predict(model, _stack(model, [frame for frame, _ in batch]))
        except Exception as exc:
            if len(batch) == 1:
                batch[0][1].set_exception(exc)
                return
            for frame, future in batch:  # one request's rows broke the batch: each on its own, errors to their own
                started = time.perf_counter()
                try:
                    future.set_result((predict(model, frame), time.perf_counter() - started))
                except Exception as alone:
                    future.set_exception(alone)
            return
        seconds = time.perf_counter() - started
        offset = 0
        for frame, future in batch:
            future.set_result((values[offset:offset + len(frame)], seconds))
            offset += len(frame)

    mirrors: queue.Queue = queue.Queue(maxsize=1000)
    shadow_process = ShadowProcess()

    def mirror_forever() -> None:
        while True:
            batch = [mirrors.get()]
            # wake a few times a second, not once per request: each wake-up takes the GIL from the event loop
            time.sleep(MIRROR_INTERVAL)
            while len(batch) < MIRROR_BATCH:
                try:
                    batch.append(mirrors.get_nowait())
                except queue.Empty:
                    break
            mirror(batch)

    threading.Thread(target=mirror_forever, name="mlops-shadows", daemon=True).start()

    def instrumented(handler):
        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            deployed = live.current  # one request sees one deployment, even if it is swapped meanwhile
            model = deployed.route(request.headers)
            metrics.in_flight.inc()
            try:
                response = await handler(request, deployed, model)
            except ClientError as exc:
                response = error(str(exc), exc.status)
            except Exception as exc:  # the model itself failed: our 5xx, named
                response = error(f"predict failed: {type(exc).__name__}: {exc}", 500)
            finally:
                metrics.in_flight.dec()
            response.headers["x-mlops-variant"] = model.variant
            response.headers["x-mlops-model-version"] = str(model.version)
            metrics.observe(model.name, str(model.version), model.variant, response.status_code,
                            time.perf_counter() - started)
            return response

        return endpoint

    def check_name(request: Request) -> None:
        asked = request.path_params["name"]
        if asked != name:
            raise ClientError(f"no model `{asked}` here; this server serves `{name}`", 404)

    async def infer(request: Request, deployed: Deployment, model: ServedModel) -> Response:
        check_name(request)
        body, frame = await decoded(request, model, decode_oip)
        values = await answer(deployed, model, frame)
        request_id = body.get("id") if isinstance(body.get("id"), str) else str(uuid.uuid4())
        return JSONResponse({"model_name": model.name, "model_version": str(model.version), "id": request_id,
                             "outputs": [{"name": "predict", "shape": [len(values)], "datatype": _datatype(values),
                                          "data": values}]})

    async def invocations(request: Request, deployed: Deployment, model: ServedModel) -> Response:
        kind = request.headers.get("content-type", "application/json").split(";")[0].strip()
        if kind != "application/json":
            raise ClientError(f"content type {kind} is not supported; send application/json", 415)
        _, frame = await decoded(request, model, decode_mlflow)
        values = await answer(deployed, model, frame)
        return JSONResponse({"predictions": values})

    async def shadow_report(request: Request) -> Response:
        return JSONResponse(shadows.summary())

    async def metadata(request: Request, deployed: Deployment, model: ServedModel) -> Response:
        check_name(request)
        inputs = [{"name": c["name"], "datatype": "FP64" if c.get("kind") == "numeric" else "BYTES",
                   "shape": [-1]} for c in model.schema]
        return JSONResponse({"name": model.name, "versions": [str(model.version)], "platform": "jupyter-mlops",
                             "inputs": inputs, "outputs": [{"name": "predict", "datatype": "BYTES",
                                                             "shape": [-1]}]})

    async def model_ready(request: Request, deployed: Deployment, model: ServedModel) -> Response:
        check_name(request)
        return JSONResponse({"name": name, "ready": True})

    async def health_live(request: Request, deployed: Deployment, model: ServedModel) -> Response:
        return JSONResponse({"live": True})

    async def ready(request: Request, deployed: Deployment, model: ServedModel) -> Response:
        return JSONResponse({"ready": True})

    async def ping(request: Request, deployed: Deployment, model: ServedModel) -> Response:
        return Response("\n", media_type="text/plain")

    async def prometheus(request: Request) -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    routes = [
        Route("/v2/health/live", instrumented(health_live)),
        Route("/v2/health/ready", instrumented(ready)),
        Route("/v2/models/{name}", instrumented(metadata)),
        Route("/v2/models/{name}/ready", instrumented(model_ready)),
        Route("/v2/models/{name}/infer", instrumented(infer), methods=["POST"]),
        Route("/invocations", instrumented(invocations), methods=["POST"]),
        Route("/ping", instrumented(ping)),
        Route("/metrics", prometheus),
        Route("/v2/shadow", shadow_report),
    ]
    app = Starlette(routes=routes)
    app.state.request_log = request_log
    app.state.limits = limits
    app.state.live = live
    app.state.shadows = shadows
    app.state.shadow_process = shadow_process
    return app
