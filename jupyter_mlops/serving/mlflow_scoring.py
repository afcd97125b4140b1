"""MLflow's scoring protocol: `POST /invocations` with `dataframe_split`, `dataframe_records`, `instances` or
`inputs`, answered `{"predictions": [...]}`, and `GET /ping`."""
from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .frames import frame_of
from .model import ClientError, Deployment, ServedModel


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


def routes(server) -> list[Route]:
    """The protocol's routes, answered through `server` (app.ModelServer)."""

    async def invocations(request: Request, deployed: Deployment, model: ServedModel) -> Response:
        kind = request.headers.get("content-type", "application/json").split(";")[0].strip()
        if kind != "application/json":
            raise ClientError(f"content type {kind} is not supported; send application/json", 415)
        _, frame = await server.decoded(request, model, decode_mlflow)
        values = await server.answer(deployed, model, frame)
        return JSONResponse({"predictions": values})

    async def ping(request: Request, deployed: Deployment, model: ServedModel) -> Response:
        return Response("\n", media_type="text/plain")

    return [
        Route("/invocations", server.endpoint(invocations), methods=["POST"]),
        Route("/ping", server.endpoint(ping)),
    ]
