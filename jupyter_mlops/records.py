"""The records the package passes around, typed: run and step statuses, and the JSON-ready shapes of a run, a
step, a sweep and an engine's answer to deploy or schedule (what the API returns, `--json` prints and the panel
reads). The statuses are `str` enums, so a status read back from the store compares equal to its member."""
from __future__ import annotations

from enum import Enum
from typing import Any, Optional, TypedDict


class _Status(str, Enum):
    def __str__(self) -> str:  # the value, also in f-strings, on every Python this package supports
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class RunStatus(_Status):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StepStatus(_Status):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"  # an upstream step failed
    REUSED = "reused"  # its outputs come from an earlier run (resume) or from a sweep's first trial


FINISHED_STEP = frozenset({StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.CANCELLED, StepStatus.SKIPPED,
                           StepStatus.REUSED})
USABLE_STEP = frozenset({StepStatus.SUCCEEDED, StepStatus.REUSED})  # its outputs can feed the steps after it


class StepView(TypedDict):
    name: str
    kind: str
    status: str  # a StepStatus value
    started: Optional[str]  # ISO 8601, UTC
    duration: Optional[float]  # seconds
    output_notebook: Optional[str]
    error: Optional[str]
    cell: Optional[int]  # the source notebook's cell where it failed, 1-based
    attempts: int


class RunView(TypedDict):
    """A run as orchestration.describe_run gives it."""
    id: str
    notebook: str
    notebook_hash: str
    status: str  # a RunStatus value
    params: dict[str, Any]
    metrics: dict[str, float]
    started: Optional[str]
    finished: Optional[str]
    duration: Optional[float]
    error: Optional[str]
    run_dir: str
    sweep_id: Optional[str]
    schedule: Optional[str]
    scheduled_for: Optional[float]
    steps: list[StepView]
    data: list[dict[str, Any]]  # what it read: {path, kind, size, mtime, digest, method, step} (data_reads.py)


class SweepView(TypedDict):
    id: str
    status: str  # succeeded (some trial did), failed, cancelled
    metric: Optional[str]
    direction: Optional[str]  # maximize | minimize
    shared_steps: list[str]  # run once, in the first trial, and reused by the others
    best: Optional[RunView]
    trials: list[RunView]


class EngineAnswer(TypedDict, total=False):
    """What an engine's deploy or schedule did: `lines` say it, one line each."""
    name: str
    status: str
    url: Optional[str]
    lines: list[str]
    server: Any  # deploy on this machine without waiting: the server on a thread of this process
