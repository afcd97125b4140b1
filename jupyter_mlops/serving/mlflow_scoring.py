"""MLflow's scoring protocol: `POST /invocations` with `dataframe_split`, `dataframe_records`, `instances` or
`inputs` in JSON, or a CSV table with a header row (`text/csv`), answered `{"predictions": [...]}`; `GET /ping`,
`/health` and `/version`."""
from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import frames
from .frames import frame_of
from .model import ClientError, Deployment, ServedModel
from .predictions import JSONAnswer


def parse_json(server, raw: bytes, model: ServedModel) -> Any:
    """The body; from frames.ARRAYS_FROM bytes, for a model whose columns are all numeric, its rows (`instances`,
    `inputs`, `dataframe_split`'s `data`) read by simdjson straight into one float array: no Python float per value
    (1,000 rows of 13: about half of orjson's lists put into numpy). Anything else (other formats, columns in
    another order, a value that is not a number, rows of unequal length, arrays within rows) is read by orjson as
    before, so every answer and every mistake's message stay the same."""
    body = rows_as_array(raw, model.columns) if model.numeric_only and model.columns and \
        len(raw) >= frames.ARRAYS_FROM else None
    return server.parse(raw) if body is None else body


def rows_as_array(raw: bytes, columns: list[str]) -> dict | None:
    try:
        import simdjson
    except ImportError:
        return None
    import numpy as np

    try:
        doc = simdjson.Parser().parse(raw)
        if not isinstance(doc, simdjson.Object):
            return None
        keys = [k for k in ("dataframe_split", "dataframe_records", "instances", "inputs") if k in doc]
        if len(keys) != 1 or keys[0] == "dataframe_records":
            return None
        value, names, brackets = doc[keys[0]], None, 1  # the rows' own "[" and one per row
        if keys[0] == "dataframe_split":
            if not isinstance(value, simdjson.Object) or set(value.keys()) - {"columns", "data"}:
                return None
            if "columns" in value:
                names, brackets = value["columns"], 2
                if not isinstance(names, simdjson.Array) or names.as_list() != columns:
                    return None
            value = value["data"] if "data" in value else None
        # an array within a row, or a "[" in a string (counted by numpy: 5 us against bytes.count's 26 for 80 KB)
        if not isinstance(value, simdjson.Array) or not len(value) or \
                np.count_nonzero(np.frombuffer(raw, np.uint8) == ord("[")) != brackets + len(value):
            return None
        width = len(columns)
        # every row `width` long (a number or an object as a row: as_buffer below refuses it; a number has no len)
        if set(map(len, value)) != {width}:
            return None
        array = np.frombuffer(value.as_buffer(of_type="d"), dtype=float).reshape(len(value), width)
    except (ValueError, TypeError, RuntimeError, UnicodeDecodeError):  # not JSON, or a value that is no number
        return None
    rows = {"columns": columns, "data": array} if keys[0] == "dataframe_split" and names is not None else \
        {"data": array} if keys[0] == "dataframe_split" else array
    return {keys[0]: rows}


def _rows(value: Any) -> bool:
    return isinstance(value, list) or getattr(value, "ndim", 0) == 2


def decode_mlflow(model: ServedModel, body: Any):
    if not isinstance(body, dict):
        raise ClientError('send a JSON object with one of "dataframe_split", "dataframe_records", "instances" or '
                          '"inputs" (MLflow\'s formats)')
    keys = [k for k in ("dataframe_split", "dataframe_records", "instances", "inputs") if k in body]
    if len(keys) != 1:
        raise ClientError('send exactly one of "dataframe_split", "dataframe_records", "instances" or "inputs"')
    value = body[keys[0]]
    if keys[0] == "dataframe_split":
        if not isinstance(value, dict) or not _rows(value.get("data")):
            raise ClientError('"dataframe_split" needs "columns" and "data" (a list of rows)')
        columns = value.get("columns")
        if columns is not None:
            if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns) or \
                    isinstance(value["data"], list) and not all(isinstance(r, list) for r in value["data"]):
                raise ClientError('"dataframe_split": "columns" is a list of names (strings) and "data" a list of '
                                  'rows')
            if isinstance(value["data"], list) and any(len(r) != len(columns) for r in value["data"]):
                raise ClientError(f'"dataframe_split": every row needs {len(columns)} values, one per column')
            if columns == model.columns:
                return frame_of(model, rows=value["data"])
            return frame_of(model, rows=[dict(zip(columns, r)) for r in value["data"]])
        return frame_of(model, rows=value["data"])
    if isinstance(value, dict):  # {"col": [values...]}
        if not all(isinstance(v, list) for v in value.values()):
            raise ClientError(f'"{keys[0]}" as an object maps each column to a list of values')
        return frame_of(model, columns=value)
    return frame_of(model, rows=value)


def parse_csv(server, raw: bytes, headers) -> Any:
    """A CSV table with a header row, as MLflow reads it (pandas), as columns of values."""
    import io

    import pandas as pd

    try:
        table = pd.read_csv(io.BytesIO(raw))
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise ClientError(f"the body is not a CSV table with a header row ({exc})") from None
    return {"columns": {str(c): table[c].tolist() for c in table.columns}}


def decode_csv(model: ServedModel, body: dict):
    return frame_of(model, columns=body["columns"])


def routes(server) -> list[Route]:
    """The protocol's routes, answered through `server` (app.ModelServer)."""
    from .._version import __version__

    async def invocations(request: Request, deployed: Deployment, model: ServedModel) -> Response:
        kind = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if kind == "application/json":
            _, frame = await server.decoded(request, model, decode_mlflow,
                                            parse=lambda server, raw, headers: parse_json(server, raw, model))
        elif kind == "text/csv":
            _, frame = await server.decoded(request, model, decode_csv, parse=parse_csv)
        else:
            raise ClientError(f"content type {kind} is not supported; send application/json or text/csv", 415)
        values = await server.answer(deployed, model, frame)
        return JSONAnswer({"predictions": values})

    async def ping(request: Request, deployed: Deployment, model: ServedModel) -> Response:
        return Response("\n", media_type="text/plain")

    async def version(request: Request, deployed: Deployment, model: ServedModel) -> Response:
        return Response(f"jupyter-mlops {__version__}", media_type="text/plain")

    return [
        Route("/invocations", server.endpoint(invocations, inference=True), methods=["POST"]),
        Route("/ping", server.endpoint(ping)),
        Route("/health", server.endpoint(ping)),
        Route("/version", server.endpoint(version)),
    ]
