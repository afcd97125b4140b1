"""The Open Inference Protocol v2 (KServe, Triton, Seldon, MLServer): health, model metadata and readiness, and
`POST /v2/models/{name}/infer` with one 2-D tensor [rows, columns] or one input per column."""
from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .frames import check_finite, flatten, float_array, frame_of
from .model import ClientError, Deployment, ServedModel

_OIP_NUMERIC = {"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32",
                "FP64"}


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
    flat = [flatten(t["data"]) for t in tensors]
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
            array = float_array(values)
            if array is not None:
                array = array.reshape(rows, width)
                check_finite(model, array)
                import pandas as pd

                return pd.DataFrame(array, columns=model.columns, copy=False)
        return frame_of(model, rows=[values[i * width:(i + 1) * width] for i in range(rows)])
    for t in tensors:
        if len(t["shape"]) > 2 or (len(t["shape"]) == 2 and t["shape"][1] != 1):
            raise ClientError(f'input `{t["name"]}`: send one 2-D tensor [rows, columns], or one input per column '
                              "with shape [rows]")
    return frame_of(model, columns={t["name"]: v for t, v in zip(tensors, flat)})




def datatype(values: list) -> str:
    if values and all(isinstance(v, bool) for v in values):
        return "BOOL"
    if values and all(isinstance(v, int) for v in values):
        return "INT64"
    if values and all(isinstance(v, (int, float)) for v in values):
        return "FP64"
    return "BYTES"


def routes(server) -> list[Route]:
    """The protocol's routes, answered through `server` (app.ModelServer)."""

    async def infer(request: Request, deployed: Deployment, model: ServedModel) -> Response:
        server.check_name(request)
        body, frame = await server.decoded(request, model, decode_oip)
        values = await server.answer(deployed, model, frame)
        request_id = body.get("id") if isinstance(body.get("id"), str) else str(uuid.uuid4())
        return JSONResponse({"model_name": model.name, "model_version": str(model.version), "id": request_id,
                             "outputs": [{"name": "predict", "shape": [len(values)], "datatype": datatype(values),
                                          "data": values}]})

    async def metadata(request: Request, deployed: Deployment, model: ServedModel) -> Response:
        server.check_name(request)
        inputs = [{"name": c["name"], "datatype": "FP64" if c.get("kind") == "numeric" else "BYTES",
                   "shape": [-1]} for c in model.schema]
        return JSONResponse({"name": model.name, "versions": [str(model.version)], "platform": "jupyter-mlops",
                             "inputs": inputs, "outputs": [{"name": "predict", "datatype": "BYTES",
                                                             "shape": [-1]}]})

    async def model_ready(request: Request, deployed: Deployment, model: ServedModel) -> Response:
        server.check_name(request)
        return JSONResponse({"name": server.name, "ready": True})

    async def health_live(request: Request, deployed: Deployment, model: ServedModel) -> Response:
        return JSONResponse({"live": True})

    async def ready(request: Request, deployed: Deployment, model: ServedModel) -> Response:
        return JSONResponse({"ready": True})

    return [
        Route("/v2/health/live", server.endpoint(health_live)),
        Route("/v2/health/ready", server.endpoint(ready)),
        Route("/v2/models/{name}", server.endpoint(metadata)),
        Route("/v2/models/{name}/ready", server.endpoint(model_ready)),
        Route("/v2/models/{name}/infer", server.endpoint(infer), methods=["POST"]),
    ]
