"""`log_metrics` for notebook code: metrics kept as scrapbook scraps in the output notebook (the record of truth)
and read back from there, with scrapbook, into the store after the step finishes."""
from __future__ import annotations

import numbers
from typing import Any

SCRAP_PREFIX = "mlops.metric."


def _number(name: str, value: Any) -> float:
    if hasattr(value, "item") and getattr(value, "size", 1) == 1:  # numpy / torch scalars
        value = value.item()
    if isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(f"log_metrics: metric `{name}` must be a number, got {type(value).__name__} {value!r}; "
                    f"pass a float, e.g. log_metrics({name}=0.93)")


def log_metrics(**metrics: Any) -> dict[str, float]:
    """Record metrics of the current step, e.g. `log_metrics(accuracy=0.93, f1=0.91)`."""
    values = {name: _number(name, value) for name, value in metrics.items()}
    for name, value in values.items():
        _glue(SCRAP_PREFIX + name, value)
    return values


def _glue(name: str, value: float) -> None:
    """The display output `scrapbook.glue(name, value, encoder="json")` writes, without importing scrapbook
    (2-3 s in every kernel that logs a metric); `scrapbook.read_notebook` reads it back as a scrap."""
    from IPython.display import display

    payload = {"name": name, "data": value, "encoder": "json", "version": 1}
    display({"application/scrapbook.scrap.json+json": payload}, raw=True,
            metadata={"scrapbook": {"name": name, "data": True, "display": False}})


def read_metrics(notebook_path: str) -> dict[str, float]:
    """Metrics glued in an executed notebook, in the order they were logged (a later value wins)."""
    import scrapbook

    scraps = scrapbook.read_notebook(str(notebook_path)).scraps
    return {name[len(SCRAP_PREFIX):]: float(scrap.data) for name, scrap in scraps.items()
            if name.startswith(SCRAP_PREFIX) and scrap.data is not None}
