"""`log_metrics` for notebook code: metrics kept as scrapbook scraps in the output notebook (the record of truth)
and read back from there into the store after the step finishes."""
from __future__ import annotations

import numbers
from typing import Any

SCRAP_PREFIX = "mlops.metric."
SCRAP_MIME = "application/scrapbook.scrap.json+json"  # scrapbook's own output type: its tools read our metrics


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
    display({SCRAP_MIME: payload}, raw=True,
            metadata={"scrapbook": {"name": name, "data": True, "display": False}})


def metrics_in(notebook: Any) -> dict[str, float]:
    """Metrics glued in an executed notebook (a NotebookNode, or its JSON as a dict), in the order they were logged
    (a later value wins): the scraps `scrapbook.read_notebook` would find, read without parsing the file again or
    importing scrapbook (which cost a step more than its own cells)."""
    found: dict[str, float] = {}
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []) or []:
            scrap = (output.get("data") or {}).get(SCRAP_MIME)
            name = scrap.get("name") if isinstance(scrap, dict) else None
            if isinstance(name, str) and name.startswith(SCRAP_PREFIX) and scrap.get("data") is not None:
                found[name[len(SCRAP_PREFIX):]] = float(scrap["data"])
    return found


def read_metrics(notebook_path: str) -> dict[str, float]:
    """Metrics glued in the executed notebook at `notebook_path` (see metrics_in)."""
    import json

    with open(notebook_path, encoding="utf-8") as f:
        return metrics_in(json.load(f))
