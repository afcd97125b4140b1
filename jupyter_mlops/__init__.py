"""jupyter-mlops: a tagged notebook becomes a tracked, parameterized pipeline, without a rewrite.

Importing this package is cheap: everything heavy (papermill, scrapbook, pandas, SQLAlchemy) loads on first use.
"""
from __future__ import annotations

from ._version import __version__  # noqa: F401

from .metrics import log_metrics  # noqa: E402 - light: scrapbook loads only when a metric is logged

_API = {"run", "list_engines", "deploy", "deploy_history", "undeploy", "resume", "runs", "iter_runs",
        "list_runs", "get_run", "validate", "compile_notebook", "sweep", "register", "models", "promote", "rollback",
        "alias_history", "monitor", "deployments", "add_schedule", "schedules", "set_schedule", "fire_schedule",
        "schedule_history", "baseline", "set_baseline", "add_notification", "notifications",
        "remove_notification", "feedback", "abtest"}
__all__ = ["log_metrics", *sorted(_API)]


def __getattr__(name: str):
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'jupyter_mlops' has no attribute {name!r}")


def load_ipython_extension(ipython) -> None:
    """`%load_ext jupyter_mlops`: registers `%mlops` (see magics.py)."""
    from .magics import load_ipython_extension as load

    load(ipython)


def _jupyter_server_extension_points() -> list[dict]:
    return [{"module": "jupyter_mlops"}]


def _load_jupyter_server_extension(serverapp) -> None:
    """The REST API for the JupyterLab panel (and the scheduler loop when enabled); see server/extension.py."""
    from .server.extension import load

    load(serverapp)


def _jupyter_labextension_paths() -> list[dict]:
    return [{"src": "labextension", "dest": "jupyter-mlops"}]
