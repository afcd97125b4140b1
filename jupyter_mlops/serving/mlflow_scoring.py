"""MLflow's scoring protocol: `POST /invocations` with `dataframe_split`, `dataframe_records`, `instances` or
`inputs` in JSON, or a CSV table with a header row (`text/csv`), answered `{"predictions": [...]}`; `GET /ping`,
`/health` and `/version`."""
from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .frames import frame_of
from .model import ClientError, Deployment, ServedModel
from .predictions import JSONAnswer


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
            _, frame = await server.decoded(request, model, decode_mlflow)
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
