"""Marshalling of step outputs between kernels, by type, through fsspec URLs.

pandas -> parquet, numpy -> .npy, scikit-learn style estimators -> joblib, anything else -> cloudpickle. Each step
writes `<artifacts>/<step>/<name>.<ext>` and then `_outputs.json`, the manifest a consumer reads: a step whose
manifest is missing did not finish. This module runs inside the step kernels, so it imports only what it uses.
"""
from __future__ import annotations

import json
import posixpath
from typing import Any

MANIFEST = "_outputs.json"


class MarshalError(Exception):
    """A step output that cannot be saved for the steps that read it."""


def _fs(url: str):
    import fsspec

    return fsspec.core.url_to_fs(url)


def _kind(value: Any) -> str:
    module = type(value).__module__.split(".")[0]
    if module == "pandas":
        import pandas as pd

        # parquet stores column names as strings: other names would come back changed, so those frames pickle
        if isinstance(value, pd.DataFrame):
            names = list(value.columns)
            return "parquet" if all(isinstance(c, str) for c in names) and len(set(names)) == len(names) \
                else "cloudpickle"
        if isinstance(value, pd.Series):
            return "parquet-series" if value.name is None or isinstance(value.name, str) else "cloudpickle"
    if module == "numpy":
        import numpy as np

        if isinstance(value, np.ndarray) and value.dtype != object:
            return "npy"
    if hasattr(value, "get_params") and hasattr(value, "fit"):
        return "joblib"
    return "cloudpickle"


_EXTENSIONS = {"parquet": "parquet", "parquet-series": "parquet", "npy": "npy", "joblib": "joblib",
               "cloudpickle": "pkl"}


def _write(kind: str, value: Any, f) -> None:
    if kind == "parquet":
        value.to_parquet(f)
    elif kind == "parquet-series":
        value.to_frame(name="__series__" if value.name is None else value.name).to_parquet(f)
    elif kind == "npy":
        import numpy as np

        np.save(f, value, allow_pickle=False)
    elif kind == "joblib":
        import joblib

        joblib.dump(value, f)
    else:
        import cloudpickle

        cloudpickle.dump(value, f)


def _read(kind: str, f) -> Any:
    if kind in ("parquet", "parquet-series"):
        import pandas as pd

        frame = pd.read_parquet(f)
        if kind == "parquet":
            return frame
        series = frame.iloc[:, 0]
        return series.rename(None) if series.name == "__series__" else series
    if kind == "npy":
        import numpy as np

        return np.load(f, allow_pickle=False)
    if kind == "joblib":
        import joblib

        return joblib.load(f)
    import cloudpickle

    return cloudpickle.load(f)


def _save_one(fs, folder: str, name: str, value: Any) -> dict:
    kind = _kind(value)
    path = posixpath.join(folder, f"{name}.{_EXTENSIONS[kind]}")
    try:
        with fs.open(path, "wb") as f:
            _write(kind, value, f)
        return {"file": posixpath.basename(path), "format": kind}
    except Exception as exc:
        if not kind.startswith("parquet"):
            raise
        # e.g. integer column names or mixed-type object columns: parquet refuses them, pickling keeps them
        fs.rm(path) if fs.exists(path) else None
        path = posixpath.join(folder, f"{name}.pkl")
        with fs.open(path, "wb") as f:
            _write("cloudpickle", value, f)
        return {"file": posixpath.basename(path), "format": "cloudpickle", "parquet_refused": str(exc)[:200]}


def save_outputs(artifacts: str, step: str, values: dict[str, Any]) -> dict[str, dict]:
    """Write a step's outputs and then its manifest; fails naming the variable, its type and the step."""
    fs, root = _fs(artifacts)
    folder = posixpath.join(root, step)
    fs.makedirs(folder, exist_ok=True)
    manifest: dict[str, dict] = {}
    for name, value in values.items():
        type_name = f"{type(value).__module__}.{type(value).__qualname__}"
        try:
            manifest[name] = _save_one(fs, folder, name, value)
        except Exception as exc:
            raise MarshalError(
                f"step `{step}` cannot save `{name}` (type {type_name}) for the steps that read it: {exc}. "
                f"Make `{name}` a plain value (list, array, DataFrame, model), or compute it in the step that "
                f"uses it") from None
        manifest[name]["type"] = type_name
    with fs.open(posixpath.join(folder, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest


def read_manifest(artifacts: str, step: str) -> dict[str, dict]:
    fs, root = _fs(artifacts)
    path = posixpath.join(root, step, MANIFEST)
    if not fs.exists(path):
        raise MarshalError(f"step `{step}` has no saved outputs under {artifacts}: run it first (or run the "
                           f"whole pipeline with `jupyter-mlops run`)")
    with fs.open(path, "r") as f:
        return json.load(f)


def load_inputs(artifacts: str, inputs: dict[str, str]) -> tuple:
    """The values of a step's inputs ({name: producing step}), in the order given."""
    fs, root = _fs(artifacts)
    manifests: dict[str, dict] = {}
    values = []
    for name, step in inputs.items():
        if step not in manifests:
            manifests[step] = read_manifest(artifacts, step)
        entry = manifests[step].get(name)
        if entry is None:
            raise MarshalError(f"step `{step}` saved no `{name}`; recompile the pipeline and rerun `{step}`")
        with fs.open(posixpath.join(root, step, entry["file"]), "rb") as f:
            values.append(_read(entry["format"], f))
    return tuple(values)


def share_step(source: str, target: str, step: str) -> None:
    """Make a step's outputs saved under `source` readable under `target` too (a sweep runs a step that no swept
    parameter reaches once, for all its trials): a symlink on local disk, a copy elsewhere."""
    import os

    src_fs, src_root = _fs(source)
    dst_fs, dst_root = _fs(target)
    src, dst = posixpath.join(src_root, step), posixpath.join(dst_root, step)
    local = {"file", "local"}
    if set(src_fs.protocol if isinstance(src_fs.protocol, tuple) else (src_fs.protocol,)) & local and \
            set(dst_fs.protocol if isinstance(dst_fs.protocol, tuple) else (dst_fs.protocol,)) & local:
        os.makedirs(dst_root, exist_ok=True)
        if not os.path.lexists(dst):
            os.symlink(src, dst, target_is_directory=True)
        return
    dst_fs.makedirs(dst, exist_ok=True)
    for path in src_fs.ls(src, detail=False):
        with src_fs.open(path, "rb") as f_in, dst_fs.open(posixpath.join(dst, posixpath.basename(path)), "wb") as f_out:
            f_out.write(f_in.read())
