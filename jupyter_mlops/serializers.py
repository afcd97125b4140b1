"""How each kind of value is saved between steps: a registry of serializers, matched by type, first match wins.

A serializer names its `format` (recorded in the step's manifest, so the reader knows how to load the file), a file
`suffix`, a `matches(value)` test and `write(value, path)` / `read(path)` on a local file. Types are matched by
their qualified names along the value's MRO, so no library is imported until a value of one of its types is met.
The built-in order: xgboost, lightgbm, PyTorch and Keras values through their own save/load (what Kale marshals),
pandas as parquet, numpy arrays as .npy, scikit-learn style estimators with joblib, anything else with cloudpickle.

A plugin adds its own with `register(Serializer(...))`, or from a package through the entry point group
`jupyter_mlops.serializers` (each entry point a Serializer, or a list of them); plugins are tried before the
built-ins. This module runs inside the step kernels: it imports nothing heavy itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

ENTRY_POINT_GROUP = "jupyter_mlops.serializers"


@dataclass(frozen=True)
class Serializer:
    format: str
    suffix: str
    matches: Callable[[Any], bool]
    write: Callable[[Any, str], None]
    read: Callable[[str], Any]


def type_named(*names: str) -> Callable[[Any], bool]:
    """A `matches` test: the value is an instance of a class with one of these qualified names (or a subclass)."""
    wanted = frozenset(names)

    def matches(value: Any) -> bool:
        return any(f"{t.__module__}.{t.__qualname__}" in wanted for t in type(value).__mro__)

    return matches


# -- the built-ins -----------------------------------------------------------------------------------------------
def _xgb_booster_read(path: str):
    import xgboost

    booster = xgboost.Booster()
    booster.load_model(path)
    return booster


def _xgb_dmatrix_read(path: str):
    import xgboost

    return xgboost.DMatrix(path)


def _lgb_booster_read(path: str):
    import lightgbm

    return lightgbm.Booster(model_file=path)


def _lgb_dataset_read(path: str):
    import lightgbm

    return lightgbm.Dataset(path)


def _torch_write(value: Any, path: str) -> None:
    import cloudpickle
    import torch

    # cloudpickle: a module class defined in the notebook (in __main__) is saved by value, so the next step, which
    # never ran that cell, can load it
    torch.save(value, path, pickle_module=cloudpickle)


def _torch_read(path: str):
    import torch

    return torch.load(path, weights_only=False)  # our own file, written by the step before


def _keras_read(path: str):
    import keras

    return keras.models.load_model(path)


_frame_type = type_named("pandas.DataFrame", "pandas.core.frame.DataFrame")  # pandas 3 names its classes `pandas.X`
_series_type = type_named("pandas.Series", "pandas.core.series.Series")


def _is_frame(value: Any) -> bool:
    # parquet keeps column names as strings: other names would come back changed, so such frames pickle
    if not _frame_type(value):
        return False
    names = list(value.columns)
    return all(isinstance(c, str) for c in names) and len(set(names)) == len(names)


def _is_series(value: Any) -> bool:
    return _series_type(value) and (value.name is None or isinstance(value.name, str))


def _frame_read(path: str):
    import pandas as pd

    return pd.read_parquet(path)


def _series_write(value: Any, path: str) -> None:
    value.to_frame(name="__series__" if value.name is None else value.name).to_parquet(path)


def _series_read(path: str):
    import pandas as pd

    series = pd.read_parquet(path).iloc[:, 0]
    return series.rename(None) if series.name == "__series__" else series


_array_type = type_named("numpy.ndarray")


def _is_array(value: Any) -> bool:
    return _array_type(value) and value.dtype != object


def _npy_write(value: Any, path: str) -> None:
    import numpy as np

    np.save(path, value, allow_pickle=False)


def _npy_read(path: str):
    import numpy as np

    return np.load(path, allow_pickle=False)


def _is_estimator(value: Any) -> bool:
    return hasattr(value, "get_params") and hasattr(value, "fit") and not isinstance(value, type)


def _joblib_write(value: Any, path: str) -> None:
    import joblib

    joblib.dump(value, path)


def _joblib_read(path: str):
    import joblib

    return joblib.load(path)


def _pickle_write(value: Any, path: str) -> None:
    import cloudpickle

    with open(path, "wb") as f:
        cloudpickle.dump(value, f)


def _pickle_read(path: str):
    import cloudpickle

    with open(path, "rb") as f:
        return cloudpickle.load(f)


FALLBACK = Serializer("cloudpickle", "pkl", lambda value: True, _pickle_write, _pickle_read)

BUILT_IN: list[Serializer] = [
    Serializer("xgboost-booster", "ubj", type_named("xgboost.core.Booster"),
               lambda value, path: value.save_model(path), _xgb_booster_read),
    Serializer("xgboost-dmatrix", "dmatrix", type_named("xgboost.core.DMatrix"),
               lambda value, path: value.save_binary(path), _xgb_dmatrix_read),
    Serializer("lightgbm-booster", "lgb.txt", type_named("lightgbm.basic.Booster"),
               lambda value, path: value.save_model(path), _lgb_booster_read),
    Serializer("lightgbm-dataset", "lgb.bin", type_named("lightgbm.basic.Dataset"),
               lambda value, path: value.save_binary(path), _lgb_dataset_read),
    # Keras before torch: a Keras 3 model on the torch backend is a torch.nn.Module too
    Serializer("keras", "keras", type_named("keras.src.models.model.Model", "keras.src.engine.training.Model",
                                            "keras.engine.training.Model"),
               lambda value, path: value.save(path), _keras_read),
    Serializer("torch", "pt", type_named("torch.Tensor", "torch.nn.modules.module.Module"), _torch_write,
               _torch_read),
    Serializer("parquet", "parquet", _is_frame, lambda value, path: value.to_parquet(path), _frame_read),
    Serializer("parquet-series", "parquet", _is_series, _series_write, _series_read),
    Serializer("npy", "npy", _is_array, _npy_write, _npy_read),
    Serializer("joblib", "joblib", _is_estimator, _joblib_write, _joblib_read),
    FALLBACK,
]

_registered: list[Serializer] = []
_plugins: list[Serializer] | None = None


def register(serializer: Serializer) -> None:
    """Put a serializer ahead of every other (for this process; a step kernel registers it in a setup cell, or
    a package through the entry point group)."""
    _registered.insert(0, serializer)


def _entry_point_serializers() -> list[Serializer]:
    """The serializers packages register (one, or a list, per entry point); a plugin that fails to import, or is
    not a Serializer, is left out with a warning: the built-in formats keep working."""
    global _plugins
    if _plugins is None:
        from . import plugins

        found: list[Serializer] = []
        for name, target, loaded in plugins.entry_points(ENTRY_POINT_GROUP):
            given = loaded if isinstance(loaded, (list, tuple)) else [loaded]
            kept = [s for s in given if isinstance(s, Serializer)]
            if len(kept) < len(given):
                plugins.log.warning("%s plugin `%s` (%s) is left out in part: only Serializer objects are used",
                                    ENTRY_POINT_GROUP, name, target)
            found += kept
        _plugins = found
    return _plugins


def all_serializers() -> list[Serializer]:
    return [*_registered, *_entry_point_serializers(), *BUILT_IN]


def for_value(value: Any) -> Serializer:
    return next(s for s in all_serializers() if s.matches(value))


def by_format(name: str) -> Serializer | None:
    return next((s for s in all_serializers() if s.format == name), None)
