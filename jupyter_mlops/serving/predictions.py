"""What `predict` returns, made ready to send: the server and the shadow process answer the same way."""
from __future__ import annotations

from typing import Any


def json_ready(predictions: Any) -> list:
    """A list of plain values: numpy arrays and pandas series through their `tolist`, other iterables as listed."""
    if hasattr(predictions, "tolist"):
        predictions = predictions.tolist()
    return list(predictions)
