"""The workspace: `.mlops/` beside the notebook (or `--workspace`, or `MLOPS_WORKSPACE`), holding the store and
`runs/<id>/` with each run's compiled bundle, executed step notebooks and artifacts.

`MLOPS_STORE_URL` points the store elsewhere (any SQLAlchemy URL) and `MLOPS_ARTIFACTS_URL` the artifacts
(any fsspec URL); by default both live in the workspace folder.
"""
from __future__ import annotations

import os
import secrets
import time
from functools import cached_property
from pathlib import Path

from .owners import owner_is_gone, process_owner  # noqa: F401 - process_owner: where callers long found it

DEFAULT_DIRNAME = ".mlops"


class Workspace:
    def __init__(self, root: str | os.PathLike, store_url: str | None = None, artifacts_url: str | None = None):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.store_url = store_url or os.environ.get("MLOPS_STORE_URL") or f"sqlite:///{self.root / 'mlops.db'}"
        self.artifacts_url = (artifacts_url or os.environ.get("MLOPS_ARTIFACTS_URL") or "").rstrip("/")

    @classmethod
    def locate(cls, workspace: str | os.PathLike | None = None, notebook: str | os.PathLike | None = None):
        """Explicit path, else $MLOPS_WORKSPACE, else `.mlops` beside the notebook (or in the current folder)."""
        chosen = workspace or os.environ.get("MLOPS_WORKSPACE")
        if not chosen:
            base = Path(notebook).resolve().parent if notebook else Path.cwd()
            chosen = base / DEFAULT_DIRNAME
        return cls(chosen)

    @cached_property
    def store(self):
        """The store, opened once per process (see store.open_store); runs whose process died are marked failed
        whenever a Workspace first asks for it."""
        from .store import open_store

        self._refuse_a_lost_store()
        store = open_store(self.store_url)
        self._fail_abandoned_runs(store)
        return store

    def _refuse_a_lost_store(self) -> None:
        """A missing or empty SQLite store beside run folders was lost (truncated, deleted, copied while written):
        starting a new one over them would make every run silently vanish from every listing."""
        db = self.root / "mlops.db"
        if self.store_url != f"sqlite:///{db}":  # a store of the user's choosing: theirs to look after
            return
        runs = self.root / "runs"
        if db.exists() and db.stat().st_size > 0 or not runs.is_dir():
            return
        kept = sum(1 for _ in zip(runs.iterdir(), range(1000)))
        if kept:
            from .errors import StoreError

            state = "is empty (0 bytes)" if db.exists() else "is missing"
            raise StoreError(f"the store {db} {state}, but {runs} holds {kept if kept < 1000 else '1000+'} run "
                             "folder(s): it was lost (a full disk, or copied while written). Restore it from a "
                             f"backup; to start a new store instead, move {runs} aside first")

    @staticmethod
    def _fail_abandoned_runs(store) -> None:
        """A run whose process died (killed, machine rebooted) would read `running` forever: mark it failed."""
        for run in store.running_runs():
            if owner_is_gone(run["owner"]):
                store.fail_abandoned(run["id"], run["owner"], "the process running it died before it finished; "
                                     f"`jupyter-mlops resume {run['id']}` continues from the unfinished steps")

    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / run_id

    def artifacts(self, run_id: str) -> str:
        """Where a run's steps exchange values: a local folder, or under the configured fsspec URL."""
        if self.artifacts_url:
            return f"{self.artifacts_url}/{run_id}"
        return str(self.run_dir(run_id) / "artifacts")


def new_run_id() -> str:
    """Sortable by start time, readable, unique across processes: 20261123-120301-3f9a1c."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)
