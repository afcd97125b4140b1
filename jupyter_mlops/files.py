"""Writes a crash or a full disk cannot cut in half: the new content goes to a temporary file beside the target,
which then replaces it in one rename. A reader (or the next run) finds the old file or the new one, never a
truncated notebook that no longer parses.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_notebook(nb: Any, path: str | os.PathLike, validate: bool = True) -> None:
    """`validate=False` for notebooks made here to the schema (tests validate them): checking each again cost
    10-20 ms a notebook, most of a `compile`."""
    import nbformat

    write_atomic(path, nbformat.writes(nb) if validate else nbformat.v4.writes(nb))


_papermill_writes_atomic = False


def papermill_writes_atomically() -> None:
    """Make papermill save notebooks at absolute local paths atomically. It saves the output notebook after every
    cell, in place: a write that failed half way (disk full) left a step notebook that was not JSON any more."""
    global _papermill_writes_atomic
    if _papermill_writes_atomic:
        return
    from papermill.iorw import LocalHandler, papermill_io

    class AtomicLocalHandler(LocalHandler):
        def write(self, buf, path):
            if not os.path.isabs(path):
                return super().write(buf, path)
            write_atomic(path, buf)

    papermill_io.register("/", AtomicLocalHandler())  # a scheme is a prefix: every absolute path
    _papermill_writes_atomic = True
