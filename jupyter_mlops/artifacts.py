"""Marshalling of step outputs between kernels, by type, through fsspec URLs.

Each value is written by the first serializer that matches its type (serializers.py: xgboost, lightgbm, PyTorch and
Keras through their own save/load, pandas -> parquet, numpy -> .npy, estimators -> joblib, anything else ->
cloudpickle). Each step writes `<artifacts>/<step>/<name>.<suffix>` and then `_outputs.json`, the manifest a
consumer reads (the format of each file): a step whose manifest is missing did not finish. This module runs inside
the step kernels, so it imports only what it uses.
"""
from __future__ import annotations

import json
import posixpath
from typing import Any

from .serializers import FALLBACK, Serializer, by_format, for_value

MANIFEST = "_outputs.json"


class MarshalError(Exception):
    """A step output that cannot be saved for the steps that read it."""


def _fs(url: str):
    import fsspec

    return fsspec.core.url_to_fs(url)


def _local_path(fs) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return bool({"file", "local"} & set(protocol))


def _write(fs, path: str, serializer: Serializer, value: Any) -> None:
    """Write through the serializer's own save (which takes a file name): in place on local disk, else into a
    temporary file that is then uploaded."""
    if _local_path(fs):
        serializer.write(value, path)
        return
    import os
    import tempfile

    with tempfile.TemporaryDirectory(prefix="mlops-out-") as tmp:
        local = os.path.join(tmp, posixpath.basename(path))
        serializer.write(value, local)
        fs.put_file(local, path)


def _read(fs, path: str, serializer: Serializer) -> Any:
    if _local_path(fs):
        return serializer.read(path)
    import os
    import tempfile

    with tempfile.TemporaryDirectory(prefix="mlops-in-") as tmp:
        local = os.path.join(tmp, posixpath.basename(path))
        fs.get_file(path, local)
        return serializer.read(local)


def _save_one(fs, folder: str, name: str, value: Any) -> dict:
    serializer = for_value(value)
    path = posixpath.join(folder, f"{name}.{serializer.suffix}")
    try:
        _write(fs, path, serializer, value)
        return {"file": posixpath.basename(path), "format": serializer.format}
    except Exception as exc:
        if serializer is FALLBACK:
            raise
        # e.g. a frame with mixed-type object columns that parquet refuses: pickling keeps it as it is
        if fs.exists(path):
            fs.rm(path)
        path = posixpath.join(folder, f"{name}.{FALLBACK.suffix}")
        try:
            _write(fs, path, FALLBACK, value)
        except Exception as second:
            raise MarshalError(f"{serializer.format} refused it ({str(exc)[:200]}), and so did cloudpickle "
                               f"({second})") from None
        return {"file": posixpath.basename(path), "format": FALLBACK.format,
                f"{serializer.format}_refused": str(exc)[:200]}


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
    if _local_path(fs):  # the reading steps find the old manifest or the new one, never half of it
        from .files import write_atomic

        write_atomic(posixpath.join(folder, MANIFEST), json.dumps(manifest, indent=1))
    else:  # an object store's put is all or nothing already
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
        serializer = by_format(entry["format"])
        if serializer is None:
            raise MarshalError(f"step `{step}` saved `{name}` as `{entry['format']}`, which no installed serializer "
                               "reads; install the package that provides it (entry point group "
                               "`jupyter_mlops.serializers`) where this step runs")
        values.append(_read(fs, posixpath.join(root, step, entry["file"]), serializer))
    return tuple(values)


def share_step(source: str, target: str, step: str) -> None:
    """Make a step's outputs saved under `source` readable under `target` too (a sweep runs a step that no swept
    parameter reaches once, for all its trials): a symlink on local disk, a copy elsewhere."""
    import os

    src_fs, src_root = _fs(source)
    dst_fs, dst_root = _fs(target)
    src, dst = posixpath.join(src_root, step), posixpath.join(dst_root, step)
    if _local_path(src_fs) and _local_path(dst_fs):
        os.makedirs(dst_root, exist_ok=True)
        if not os.path.lexists(dst):
            os.symlink(src, dst, target_is_directory=True)
        return
    dst_fs.makedirs(dst, exist_ok=True)
    for path in src_fs.ls(src, detail=False):
        with src_fs.open(path, "rb") as f_in, dst_fs.open(posixpath.join(dst, posixpath.basename(path)), "wb") as f_out:
            f_out.write(f_in.read())
