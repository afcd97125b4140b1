"""Request values to the rows `predict` gets: the training columns, in order, each value checked (a 4xx naming the
column otherwise). Both protocols decode through these. A request's rows are a DataFrame, or, when every column is
numeric (the usual case), a 2-D float array in the columns' order: a DataFrame per request cost 22 us, more than a
1-row request's whole decoding, so the arrays of a batch become one DataFrame when it is predicted (`as_frame`,
`stack`)."""
from __future__ import annotations

import json
from typing import Any

from .model import ClientError, ServedModel



def frame_of(model: ServedModel, rows: Any = None, columns: dict[str, list] | None = None):
    """The request's rows in the model's column order, from rows (lists or dicts) or from columns; checks names,
    widths and values. When every column is numeric (the usual case) they are one float array (see above)."""
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
            return numeric_rows(model, table, transpose=True)
        frame = pd.DataFrame(dict(zip(names, table)), columns=names)
    elif getattr(rows, "ndim", 0) == 2 and numeric_only and rows.shape[1] == len(expected):
        return numeric_rows(model, rows)  # rows read as one array already (mlflow_scoring.rows_as_array)
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
                return numeric_rows(model, [[r.get(c) for c in expected] for r in rows])
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
                return numeric_rows(model, rows)
            frame = pd.DataFrame(rows, columns=expected or None)
    numeric = [i for i, c in enumerate(model.schema) if c.get("kind") == "numeric"]
    for i in numeric:
        column = model.columns[i]
        try:
            frame[column] = frame[column].astype(float)
        except (TypeError, ValueError):
            raise ClientError(f"column `{column}` must be numeric; got {frame[column].tolist()[:3]}") from None
    if numeric:
        check_finite(model, frame[[model.columns[i] for i in numeric]].to_numpy(), numeric)
    return frame


def check_finite(model: ServedModel, array, columns: list[int] | None = None) -> None:
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


# bytes of JSON from which both protocols read a body's numbers with simdjson straight into arrays (oip.py,
# mlflow_scoring.py); below, orjson is as quick (one row of 13: 1.6 against 1.8 us)
ARRAYS_FROM = 4096
QUICK_READ_FROM = 32  # rows (or values); below, numpy's own reader is quicker (1 row of 13: 1.0 against 2.9 us)


def float_array(values: list):
    """`values` as a float array, or None when some are not numbers (the caller then names the culprit)."""
    import numpy as np

    if type(values) is list and len(values) >= QUICK_READ_FROM:
        try:
            return _rows_array(values) if values and type(values[0]) is list else \
                np.fromiter(values, float, count=len(values))
        except (TypeError, ValueError):
            pass
    try:  # anything the quick ways cannot read (deeper nesting, a tuple): numpy's general reader
        return np.array(values, dtype=float)
    except (TypeError, ValueError):
        return None


def _rows_array(rows: list):
    """Rows of equal length as a 2-D float array, read value by value in C: numpy's reader on nested lists
    checks every value's shape first and took 1.3-2.4 times as long on 1,000 rows of 13 here (0.77 against 0.61 ms,
    0.81 against 0.34 ms, on a noisy machine)."""
    import itertools

    import numpy as np

    widths = set(map(len, rows)) if set(map(type, rows)) == {list} else ()
    if len(widths) != 1:
        raise ValueError("ragged rows")
    (width,) = widths
    flat = np.fromiter(itertools.chain.from_iterable(rows), float, count=len(rows) * width)
    return flat.reshape(len(rows), width)


def numeric_rows(model: ServedModel, table: list, transpose: bool = False):
    array = float_array(table)
    if array is None or array.ndim != 2:
        for i, column in enumerate(model.columns):  # the slow path, only to name the culprit
            values = table[i] if transpose else [row[i] for row in table]
            if any(isinstance(v, (bool, list, dict, str)) or not (_is_float(v) or v is None) for v in values):
                raise ClientError(f"column `{column}` must be numeric; got {values[:3]}")
        raise ClientError("inputs must be numbers, one per column")
    if transpose:
        array = array.T
    check_finite(model, array)
    return array


def as_frame(model: ServedModel, rows):
    """A request's rows as the DataFrame `predict` gets."""
    if type(rows).__name__ != "ndarray":
        return rows
    import pandas as pd

    return pd.DataFrame(rows, columns=model.column_index, copy=False)


def stack(model: ServedModel, frames: list):
    """Several requests' rows as one DataFrame (rows in order), for one predict call."""
    if len(frames) == 1:
        return as_frame(model, frames[0])
    import numpy as np
    import pandas as pd

    if all(type(f).__name__ == "ndarray" for f in frames):
        return as_frame(model, np.vstack(frames))
    return pd.concat([as_frame(model, f) for f in frames], ignore_index=True)


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


def flatten(data: list) -> list:
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


def json_loader():
    """orjson when installed (several times faster on arrays of numbers), else the standard library."""
    try:
        import orjson

        return orjson.loads
    except ImportError:
        return json.loads
