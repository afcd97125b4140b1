"""Data checks: each step's output values profiled, then compared with the notebook's baseline run.

`profile(value)` runs inside the step's kernel (data_reads.report_step calls it on the values the step hands to
later steps):
- a DataFrame gives its row count and, for each column, its dtype, null fraction, numeric range and quantiles, and
  its categories when it has few;
- a Series gives the same as one column;
- a numeric array gives the same per column.
Above SAMPLE_ROWS rows, the quantiles and categories come from a random sample of that many rows, and the profile
says so. The row count, null fractions and ranges always cover every row.

`compare(baseline, current, thresholds)` runs on the host. It turns the differences into findings, each naming the
step, the variable and the column:
- a missing or a new column;
- a dtype change;
- a null rate up by more than `null_increase`;
- values outside the baseline's range in more than `out_of_range` of the rows (counted exactly in the kernel, which
  is told the baseline's ranges);
- categories the baseline never had;
- a row count that changed by more than `row_change` (a share of the baseline's rows).

A notebook's baseline is its first succeeded run, or the run `jupyter-mlops baseline NOTEBOOK RUN` names. Findings
are warnings on the run; with `--data-checks strict` the step fails, and the first finding is the reason.
"""
from __future__ import annotations

from typing import Any

from .errors import MlopsError

# out_of_range: a fresh sample of the same data has a few values past the baseline's extremes (about 2/n of them,
# and more for skewed columns); 5% is a shift, not that
THRESHOLDS = {"null_increase": 0.05, "out_of_range": 0.05, "row_change": 0.5}
MODES = ("warn", "strict", "off")
SAMPLE_ROWS = 100_000
MAX_COLUMNS = 200
MAX_CATEGORIES = 50
QUANTILES = (0.01, 0.25, 0.5, 0.75, 0.99)


def check_settings(mode: str | None, thresholds: dict[str, Any] | None) -> tuple[str, dict[str, float]]:
    """The mode and the thresholds (defaults filled in), each checked; errors name the setting."""
    mode = mode or "warn"
    if mode not in MODES:
        raise MlopsError(f"--data-checks must be one of {', '.join(MODES)}, got `{mode}`")
    chosen = dict(THRESHOLDS)
    for name, value in (thresholds or {}).items():
        if name not in THRESHOLDS:
            raise MlopsError(f"unknown data check threshold `{name}`; the thresholds are "
                             + ", ".join(f"{k} (default {v:g})" for k, v in THRESHOLDS.items()))
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = -1.0
        if not 0 <= number <= (1 if name != "row_change" else 1000):
            raise MlopsError(f"data check threshold {name}={value} must be a share between 0 and 1"
                             + (" (or above 1 for row_change)" if name == "row_change" else ""))
        chosen[name] = number
    return mode, chosen


# -- in the kernel ----------------------------------------------------------------------------------------------
def _column(values: Any, sample: Any, ranges: list | None) -> dict:
    """One column's profile: nulls, range and rows outside the baseline's `ranges` ([min, max]) over every row
    (`values`, vectorized, no copy), quantiles and categories over `sample` (the same rows below SAMPLE_ROWS)."""
    import pandas as pd

    out: dict[str, Any] = {"dtype": str(values.dtype), "nulls": float(values.isna().mean()) if len(values) else 0.0}
    present = sample.dropna()
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if numeric and len(present):
        out.update(min=float(values.min()), max=float(values.max()))
        out["quantiles"] = [float(q) for q in present.quantile(list(QUANTILES))]
        if ranges:
            low, high = ranges
            out["outside_baseline"] = float(((values < low) | (values > high)).sum() / len(values))
    elif not numeric and len(present):
        try:
            counts = present.astype(str).value_counts()
        except TypeError:
            return out
        if len(counts) <= MAX_CATEGORIES:
            out["categories"] = sorted(counts.index.tolist())
    return out


def profile(value: Any, ranges: dict[str, list] | None = None) -> dict | None:
    """A value's profile, or None for values that are not tables (models, dicts, ...)."""
    module = type(value).__module__.split(".")[0]
    if module not in ("pandas", "numpy"):
        return None
    import pandas as pd

    if isinstance(value, pd.Series):
        frame = value.to_frame(name=str(value.name) if value.name is not None else "value")
    elif isinstance(value, pd.DataFrame):
        frame = value
    else:
        import numpy as np

        if not isinstance(value, np.ndarray) or value.ndim not in (1, 2) or value.dtype.kind not in "biuf":
            return None
        frame = pd.DataFrame(value.reshape(len(value), -1) if value.ndim == 2 else value[:, None])
    ranges = ranges or {}
    kept = frame.iloc[:, :MAX_COLUMNS]
    # one sample of rows for every column: drawing one per column cost seconds on a million rows
    sample = kept.sample(SAMPLE_ROWS, random_state=0) if len(kept) > SAMPLE_ROWS else kept
    columns = {str(c): _column(kept.iloc[:, i], sample.iloc[:, i], ranges.get(str(c)))
               for i, c in enumerate(kept.columns)}
    return {"kind": type(value).__name__, "rows": int(len(frame)), "columns": columns,
            "sampled": len(frame) > SAMPLE_ROWS, "columns_left_out": max(0, frame.shape[1] - MAX_COLUMNS)}


def profiles(namespace: dict, names: list[str], baseline_ranges: dict | None = None) -> dict[str, dict]:
    """The profiles of the step's output values that are tables; a value that cannot be profiled is skipped."""
    out = {}
    for name in names:
        if name in namespace:
            try:
                found = profile(namespace[name], (baseline_ranges or {}).get(name))
            except Exception:  # an odd value must not cost the step its record
                found = None
            if found is not None:
                out[name] = found
    return out


def ranges_of(step_profiles: dict[str, dict]) -> dict[str, dict[str, list]]:
    """{variable: {column: [min, max]}} of a baseline step's profiles: what the kernel counts values outside of."""
    return {name: {c: [p["min"], p["max"]] for c, p in prof["columns"].items() if "min" in p}
            for name, prof in step_profiles.items()}


# -- on the host ------------------------------------------------------------------------------------------------
def compare(step: str, baseline: dict[str, dict], current: dict[str, dict], thresholds: dict[str, float]) -> list:
    """Findings of one step: its values' profiles against the baseline's."""
    findings = []

    def found(variable: str, column: str | None, check: str, message: str) -> None:
        where = f"`{variable}`" + (f" column `{column}`" if column is not None else "")
        findings.append({"step": step, "variable": variable, "column": column, "check": check,
                         "message": f"step `{step}`: {where} {message}"})

    for name, base in baseline.items():
        now = current.get(name)
        if now is None:
            continue  # not a table this time, or not produced: the step's own error says more
        if base["rows"] and abs(now["rows"] - base["rows"]) / base["rows"] > thresholds["row_change"]:
            found(name, None, "row_count", f"has {now['rows']} rows, the baseline had {base['rows']} (more than "
                                           f"{thresholds['row_change']:.0%} change)")
        for column in base["columns"]:
            if column not in now["columns"] and not now.get("columns_left_out"):
                found(name, column, "missing_column", "is missing (the baseline had it)")
        for column, col in now["columns"].items():
            was = base["columns"].get(column)
            if was is None:
                if not base.get("columns_left_out"):
                    found(name, column, "new_column", f"is new ({col['dtype']}); the baseline did not have it")
                continue
            if col["dtype"] != was["dtype"]:
                found(name, column, "dtype", f"changed dtype from {was['dtype']} to {col['dtype']}")
            if col["nulls"] - was["nulls"] > thresholds["null_increase"]:
                found(name, column, "nulls", f"is {col['nulls']:.1%} null, the baseline {was['nulls']:.1%}")
            outside = col.get("outside_baseline")
            if outside is not None and outside > thresholds["out_of_range"]:
                found(name, column, "out_of_range", f"has {outside:.1%} of values outside the baseline's range "
                                                    f"[{was['min']:g}, {was['max']:g}] (now {col['min']:g} to "
                                                    f"{col['max']:g})")
            if "categories" in was and "categories" in col:
                unseen = sorted(set(col["categories"]) - set(was["categories"]))
                if unseen:
                    shown = ", ".join(repr(u) for u in unseen[:5]) + (f" and {len(unseen) - 5} more"
                                                                     if len(unseen) > 5 else "")
                    found(name, column, "new_categories", f"has categories the baseline never had: {shown}")
    return findings
