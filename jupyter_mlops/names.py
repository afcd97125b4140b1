"""The names users give things (models, schedules, deployments) and the ids the tool makes (runs), checked in one
place, before any file is created or any process started with them.

A name becomes a folder (`models/NAME`, `logs/NAME`), a database key, a command-line argument and, on a cluster,
part of a Kubernetes object's name and a label value: so letters, digits, `_`, `-` and `.`, starting with a letter
or digit (never `..`, `/`, a NUL byte or a leading `-` that a command would read as an option), at most 63
characters (a Kubernetes label value).
"""
from __future__ import annotations

import re
from typing import Any

from .errors import MlopsError, a

MAX_NAME = 63
MAX_PATH = 1024  # a notebook path from a client; the OS refuses about 4096, with a traceback
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# new_run_id(): 20261124-001437-3f9a1c; a sweep's pod adds -INDEX; trials and older ids keep to the same letters
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
MAX_RUN_ID = 100


def check_name(name: Any, what: str = "model name") -> str:
    """`name` if usable as a name; else a MlopsError saying what is wrong and what would do."""
    if not isinstance(name, str) or not name:
        raise MlopsError(f"{a(what)} is required, e.g. digits-svc")
    shown = name if len(name) <= 40 else name[:40] + "..."
    if len(name) > MAX_NAME:
        raise MlopsError(f"{what} `{shown}` has {len(name)} characters; at most {MAX_NAME} (it becomes a folder and "
                         "a Kubernetes name)")
    if not _NAME.fullmatch(name):
        raise MlopsError(f"{what} {shown!r} is not usable; use letters, digits, `_`, `-` or `.`, starting with "
                         "a letter or digit, e.g. digits-svc")
    return name


def check_run_id(run_id: Any) -> str:
    if not isinstance(run_id, str) or len(run_id) > MAX_RUN_ID or not _RUN_ID.fullmatch(run_id):
        shown = repr(run_id)[:60]
        raise MlopsError(f"run id {shown} is not a run id: letters, digits, `_`, `-` and `.`, at most {MAX_RUN_ID} "
                         "characters, e.g. 20261124-001437-3f9a1c (see `jupyter-mlops runs`)")
    return run_id


def check_path_text(path: Any, what: str = "path") -> str:
    """A path given as text by a client: refused before the OS sees it if it could only fail there."""
    if not isinstance(path, str) or not path.strip():
        raise MlopsError(f"`{what}` is required")
    if "\x00" in path:
        raise MlopsError(f"`{what}` contains a NUL byte; send the notebook's path as plain text")
    if len(path) > MAX_PATH:
        raise MlopsError(f"`{what}` has {len(path)} characters; at most {MAX_PATH}")
    return path
