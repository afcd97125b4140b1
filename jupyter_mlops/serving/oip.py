"""The Open Inference Protocol v2 (KServe, Triton, Seldon, MLServer): server and model metadata, health and
readiness, `POST /v2/models/{name}[/versions/{version}]/infer` with one 2-D tensor [rows, columns] or one input per
column, in JSON or with the binary tensor data extension (tritonclient's default: a JSON header of
`Inference-Header-Content-Length` bytes, then each tensor's raw little-endian bytes), and the model repository
extension's index."""
from __future__ import annotations

import asyncio
import itertools
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import frames
from .frames import check_finite, flatten, float_array, frame_of
from .model import ClientError, Deployment, ServedModel
from .predictions import JSONAnswer

# numpy's little-endian dtype of each numeric datatype, for tensors sent and answered as raw bytes
_DTYPES = {"BOOL": "?", "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8", "INT8": "<i1",
           "INT16": "<i2", "INT32": "<i4", "INT64": "<i8", "FP16": "<f2", "FP32": "<f4", "FP64": "<f8"}
_OIP_NUMERIC = set(_DTYPES)
OUTPUT = "predict"  # the one output a served model has
EXTENSIONS = ["binary_tensor_data", "model_repository", "statistics"]


def split_binary(raw: bytes, headers) -> tuple[bytes, bytes | None]:
    """The JSON header of a request and, with the binary tensor data extension, the raw bytes after it."""
    declared = headers.get("inference-header-content-length")
    if declared is None:
        return raw, None
    if not declared.strip().isdigit() or int(declared) > len(raw):
        raise ClientError(f"Inference-Header-Content-Length must be the size in bytes of the JSON header at the "
                          f"start of the body ({len(raw):,} bytes), got {declared!r}")
    return raw[:int(declared)], raw[int(declared):]


def attach_binary(body: Any, binary: bytes) -> None:
    """Give each input sent as raw bytes (`parameters.binary_data_size`, in the order of the inputs) its values."""
    import numpy as np

    inputs = body.get("inputs") if isinstance(body, dict) else None
    offset = 0
    for t in inputs if isinstance(inputs, list) else []:
        parameters = t.get("parameters") if isinstance(t, dict) else None
        size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
        if size is None:
            continue
        name = t.get("name")
        if type(size) is not int or size < 0 or offset + size > len(binary):
            raise ClientError(f"input `{name}`: binary_data_size {size!r} is not within the {len(binary):,} bytes "
                              "after the JSON header")
        if "data" in t:
            raise ClientError(f'input `{name}` has both "data" and binary_data_size; send one')
        chunk, offset = binary[offset:offset + size], offset + size
        kind = t.get("datatype")
        if kind == "BYTES":
            t["data"] = _bytes_elements(name, chunk)
        elif kind in _DTYPES:
            itemsize = np.dtype(_DTYPES[kind]).itemsize
            if size % itemsize:
                raise ClientError(f"input `{name}`: {size} bytes are not a whole number of {kind} values "
                                  f"({itemsize} bytes each)")
            t["data"] = np.frombuffer(chunk, dtype=_DTYPES[kind])
        else:
            raise ClientError(f"input `{name}`: unknown datatype {kind!r}")
    if offset != len(binary):
        raise ClientError(f"{len(binary) - offset:,} bytes after the JSON header belong to no input (each binary "
                          "input says how many are its own in parameters.binary_data_size)")


def _bytes_elements(name: str, chunk: bytes) -> list[str]:
    """BYTES tensor elements as sent raw: each a 4-byte little-endian length, then that many bytes."""
    values, at = [], 0
    while at < len(chunk):
        if at + 4 > len(chunk):
            raise ClientError(f"input `{name}`: a BYTES element is cut short (4 length bytes, then the bytes)")
        length = int.from_bytes(chunk[at:at + 4], "little")
        value = chunk[at + 4:at + 4 + length]
        if len(value) != length:
            raise ClientError(f"input `{name}`: a BYTES element says {length} bytes but {len(value)} follow")
        values.append(value.decode("utf-8", errors="replace"))
        at += 4 + length
    return values


# how simdjson reads a numeric datatype's JSON values in one go: as the binary extension keeps them, ints as ints
_READ_AS = {kind: ("d", "<f8") if kind.startswith("FP") else ("u", "<u8") if kind.startswith("UINT") else ("i", "<i8")
            for kind in _OIP_NUMERIC - {"BOOL"}}


def parse_oip(server, raw: bytes, headers) -> Any:
    header, binary = split_binary(raw, headers)
    body = numeric_data_as_arrays(header) if binary is None and len(header) >= frames.ARRAYS_FROM else None
    if body is None:
        body = server.parse(header)
    if binary is not None:
        attach_binary(body, binary)
    return body


def numeric_data_as_arrays(raw: bytes) -> dict | None:
    """The request with each numeric input's "data" read by simdjson straight into one array (floats, or ints for
    the INT/UINT datatypes), as the binary extension's data is: no Python number per value (1,000 rows of 13:
    0.38 ms against 1.34 ms for orjson's lists put into numpy). None where it does not apply: simdjson not
    installed, or the body not a JSON object (orjson then reads it, or names what is wrong with it). Data that is
    not all numbers of its datatype stays a list, so its errors name the column as before."""
    try:
        import simdjson
    except ImportError:
        return None
    import numpy as np

    def plain(value):
        if isinstance(value, simdjson.Array):
            return value.as_list()
        return value.as_dict() if isinstance(value, simdjson.Object) else value

    def tensor(t):
        if not isinstance(t, simdjson.Object):
            return plain(t)
        # by key: simdjson's items() made every value a Python object, the data's 13,000 floats too
        out = {key: plain(t[key]) for key in t.keys() if key != "data"}
        data = t["data"] if "data" in t else None
        if isinstance(data, simdjson.Array) and out.get("datatype") in _READ_AS:
            of_type, dtype = _READ_AS[out["datatype"]]
            try:
                out["data"] = np.frombuffer(data.as_buffer(of_type=of_type), dtype=dtype)
                return out
            except (TypeError, ValueError):  # a null, a string, 1.5 in an INT tensor, out of range: as written
                pass
        if "data" in t:
            out["data"] = plain(data)
        return out

    try:
        doc = simdjson.Parser().parse(raw)  # a parser per body: bodies may be read on several threads
        if not isinstance(doc, simdjson.Object):
            return None
        inputs = doc["inputs"] if "inputs" in doc else None
        return {key: [tensor(t) for t in inputs] if key == "inputs" and isinstance(inputs, simdjson.Array)
                else plain(doc[key]) for key in doc.keys()}
    except (ValueError, RuntimeError, UnicodeDecodeError):  # not valid JSON, or nested past simdjson's depth
        return None


def _values(data: Any):
    return data.ravel() if hasattr(data, "ravel") else flatten(data)


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
        if not isinstance(t["data"], list) and not hasattr(t["data"], "ravel"):
            raise ClientError(f'input `{t["name"]}`: "data" must be a list (or its bytes after the JSON header, '
                              "with parameters.binary_data_size)")
    if len(tensors) == 1 and len(tensors[0]["shape"]) == 2 and model.numeric_only \
            and tensors[0]["shape"][1] == len(model.columns):
        rows, width = tensors[0]["shape"]
        array = float_array(tensors[0]["data"])  # nested lists straight into numpy: no Python loop per value
        if array is not None and array.size == rows * width:
            array = array.reshape(rows, width)
            check_finite(model, array)
            return array
    flat = [_values(t["data"]) for t in tensors]  # the general way, which also names what is wrong
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
                return array
        return frame_of(model, rows=[list(values[i * width:(i + 1) * width]) for i in range(rows)])
    for t in tensors:
        if len(t["shape"]) > 2 or (len(t["shape"]) == 2 and t["shape"][1] != 1):
            raise ClientError(f'input `{t["name"]}`: send one 2-D tensor [rows, columns], or one input per column '
                              "with shape [rows]")
    return frame_of(model, columns={t["name"]: list(v) for t, v in zip(tensors, flat)})




def datatype(values: list) -> str:
    """The OIP datatype of an answer's values, from the set of their types (gathered in C: testing each value in
    Python took 40 us of a 1,000-row request)."""
    kinds = set(map(type, values))
    if not kinds:
        return "BYTES"
    if kinds == {bool}:
        return "BOOL"
    if all(issubclass(k, int) for k in kinds):
        return "INT64"
    if all(issubclass(k, (int, float)) for k in kinds):
        return "FP64"
    return "BYTES"


def output_datatype(model: ServedModel) -> str:
    """What infer answers for this model, learnt once from a prediction on a typical row (the training data's
    first sampled value or most frequent category per column), for metadata to say before any request came."""
    known = getattr(model, "oip_datatype", None)
    if known is None:
        import pandas as pd

        columns = (model.reference or {}).get("columns", {})
        row = {}
        for c in model.columns:
            stats = columns.get(c, {})
            if stats.get("kind") == "categorical":
                row[c] = next(iter(stats.get("frequencies") or {"": 0}))
            else:
                row[c] = (stats.get("sample") or [stats.get("mean") or 0.0])[0]
        try:
            from .predictions import json_ready

            known = datatype(json_ready(model.predict(pd.DataFrame([row], columns=model.columns))))
        except Exception:  # a model that needs real rows: told by the first request instead
            return "BYTES"
        model.oip_datatype = known
    return known


def requested_outputs(body: dict) -> bool:
    """Whether the answer goes as raw bytes; a requested output the model does not have is the client's error."""
    wanted = body.get("outputs")
    parameters = body.get("parameters") if isinstance(body.get("parameters"), dict) else {}
    binary = parameters.get("binary_data_output") is True
    if wanted is None:
        return binary
    if not isinstance(wanted, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str)
                                                for o in wanted):
        raise ClientError('"outputs" is a list of {"name": ...}; this model has one output, `predict`')
    unknown = [o["name"] for o in wanted if o["name"] != OUTPUT]
    if unknown:
        raise ClientError(f"no output `{unknown[0]}`; this model has one output, `{OUTPUT}`")
    return binary or any(isinstance(o.get("parameters"), dict) and o["parameters"].get("binary_data") is True
                         for o in wanted)


def binary_response(header: dict, values: list, kind: str) -> Response:
    """The answer with the binary tensor data extension: the JSON header, then the output's raw bytes."""
    import json

    import numpy as np

    if kind == "BYTES":
        raw = b"".join(len(b).to_bytes(4, "little") + b for b in (str(v).encode() for v in values))
    else:
        raw = np.asarray(values, dtype=_DTYPES[kind]).tobytes()
    output = header["outputs"][0]
    del output["data"]
    output["parameters"] = {"binary_data_size": len(raw)}
    head = json.dumps(header).encode()
    return Response(head + raw, media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(len(head))})


def routes(server) -> list[Route]:
    """The protocol's routes, answered through `server` (app.ModelServer); the `/versions/{version}` forms answer
    with that version when it is deployed here (primary, canary or shadow)."""
    from .._version import __version__

    # an answer's id when the request has none: unique (a random prefix per server, then a count), and without the
    # os.urandom call per request that uuid4 made (3% of a 1-row request)
    id_prefix, id_counter = f"{uuid.uuid4().hex[:12]}-", itertools.count(1)

    async def infer(request: Request, deployed: Deployment, model: ServedModel) -> Response:
        server.check_name(request)
        body, frame = await server.decoded(request, model, decode_oip, parse=parse_oip)
        binary = requested_outputs(body)
        values = await server.answer(deployed, model, frame)
        kind = datatype(values)
        model.oip_datatype = kind
        request_id = body.get("id") if isinstance(body.get("id"), str) else f"{id_prefix}{next(id_counter)}"
        header = {"model_name": model.name, "model_version": str(model.version), "id": request_id,
                  "outputs": [{"name": OUTPUT, "shape": [len(values)], "datatype": kind, "data": values}]}
        return binary_response(header, values, kind) if binary else JSONAnswer(header)

    async def metadata(request: Request, deployed: Deployment, model: ServedModel) -> Response:
        server.check_name(request)
        inputs = [{"name": c["name"], "datatype": "FP64" if c.get("kind") == "numeric" else "BYTES",
                   "shape": [-1]} for c in model.schema]
        kind = getattr(model, "oip_datatype", None) or await asyncio.to_thread(output_datatype, model)
        versions = [str(m.version) for m in deployed.variants()] if "version" not in request.path_params \
            else [str(model.version)]
        return JSONResponse({"name": model.name, "versions": list(dict.fromkeys(versions)),
                             "platform": "jupyter-mlops", "inputs": inputs,
                             "outputs": [{"name": OUTPUT, "datatype": kind, "shape": [-1]}]})

    async def model_ready(request: Request, deployed: Deployment, model: ServedModel) -> Response:
        server.check_name(request)
        return JSONResponse({"name": server.name, "ready": True})

    async def health_live(request: Request, deployed: Deployment, model: ServedModel) -> Response:
        return JSONResponse({"live": True})

    async def ready(request: Request, deployed: Deployment, model: ServedModel) -> Response:
        return JSONResponse({"ready": True})

    async def server_metadata(request: Request, deployed: Deployment, model: ServedModel) -> Response:
        return JSONResponse({"name": "jupyter-mlops", "version": __version__, "extensions": EXTENSIONS})

    async def statistics(request: Request, deployed: Deployment, model: ServedModel) -> Response:
        """The statistics extension: every deployed version, the model's, or one version's (its route)."""
        if "name" in request.path_params:
            server.check_name(request)
        variants = [model] if "version" in request.path_params else deployed.variants()
        versions = list(dict.fromkeys((m.name, str(m.version)) for m in variants))
        return JSONResponse({"model_stats": server.metrics.statistics(versions)})

    async def repository_index(request: Request, deployed: Deployment, model: ServedModel) -> Response:
        return JSONResponse([{"name": m.name, "version": str(m.version), "state": "READY"}
                             for m in deployed.variants()])

    return [
        Route("/v2", server.endpoint(server_metadata)),
        Route("/v2/health/live", server.endpoint(health_live)),
        Route("/v2/health/ready", server.endpoint(ready)),
        Route("/v2/repository/index", server.endpoint(repository_index), methods=["POST"]),
        Route("/v2/models/stats", server.endpoint(statistics)),  # before /v2/models/{name}: "stats" is no name
        Route("/v2/models/{name}/stats", server.endpoint(statistics)),
        Route("/v2/models/{name}/versions/{version}/stats", server.endpoint(statistics)),
        Route("/v2/models/{name}", server.endpoint(metadata)),
        Route("/v2/models/{name}/ready", server.endpoint(model_ready)),
        Route("/v2/models/{name}/infer", server.endpoint(infer, inference=True), methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}", server.endpoint(metadata)),
        Route("/v2/models/{name}/versions/{version}/ready", server.endpoint(model_ready)),
        Route("/v2/models/{name}/versions/{version}/infer", server.endpoint(infer, inference=True),
              methods=["POST"]),
    ]
