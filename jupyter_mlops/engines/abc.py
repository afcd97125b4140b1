"""What an engine is: the place a notebook's runs, sweeps, deployments and schedules execute.

An engine is a class registered under the entry-point group `jupyter_mlops.engines` (see engines/__init__.py).
The Python API, the CLI (`--backend NAME`), `%mlops` and the panel find it there: its name, what it does
(`verbs`) and the settings it takes (`options`, which become `--flags` and form fields), so adding an engine is
one module and one entry point (ARCHITECTURE.md: "Adding an engine").

The contract, per verb an engine lists in `verbs`:
- `run(notebook, parameters, *, run_id, on_update, on_log, **keywords) -> dict`: run the notebook once and record
  it in the workspace's store (orchestration.record_run), keep its status current, return it as
  orchestration.describe_run does. A failed run is returned (status `failed`, `error` saying why), not raised.
- `sweep(notebook, plan, *, on_trial, **keywords) -> dict`: run a trials.SweepPlan; every trial a run under one
  sweep id; returns {id, status, metric, direction, shared_steps, best, trials}.
- `deploy(name, *, canary, weight, shadow, sticky_header, **keywords) -> dict`: serve model `name` (its
  `production` version, else the latest: registry.primary_version) with the canary/shadow versions given;
  returns {name, status, url, lines} (lines: what was done, one line each).
- `undeploy(name) -> dict`: stop serving model `name` and forget the deployment (its request logs stay);
  returns {name, status: "stopped", lines}; an unknown name is an error naming the deployments there are.
- `schedule(notebook, name, cron, parameters, *, timezone, **keywords) -> dict`: fire the notebook on a cron;
  returns {name, cron, timezone, lines, ...}.
- `cancel()`: stop what this engine object started (another thread calls it); the run is recorded `cancelled`.

The shapes returned are typed in records.py (RunView, SweepView, EngineAnswer); statuses are RunStatus and
StepStatus values.

`**keywords` are the settings a verb takes on this engine only (the local engine's `timeout`, `host`, ...): the
registry checks them against the method's signature, so a keyword another engine takes is a clear error here.
User mistakes are `MlopsError`s naming the setting and the fix, raised before anything starts.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

VERBS = ("run", "sweep", "deploy", "undeploy", "schedule")


@dataclass(frozen=True)
class Option:
    """A setting of an engine: a keyword of the API (`image=`), a flag of the CLI and `%mlops` (`--image`), a field
    of the panel's forms. `verbs` are the verbs it applies to; `shown=False` keeps it to the Python API (a test's
    client object, say)."""
    name: str
    help: str
    default: Any = None
    type: Callable[[str], Any] = str  # str, int, float or bool (a bool is a flag that takes no value)
    verbs: tuple[str, ...] = VERBS
    shown: bool = True

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def describe(self) -> dict:
        """JSON-ready, for the panel."""
        return {"name": self.name, "flag": self.flag, "help": self.help, "verbs": list(self.verbs),
                "type": {str: "text", int: "integer", float: "number", bool: "flag"}.get(self.type, "text"),
                "default": self.default if isinstance(self.default, (str, int, float, bool, type(None))) else None}


class Engine:
    """The base of every engine; see the module's docstring for the contract."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""  # one line, shown by --help and the panel
    verbs: ClassVar[tuple[str, ...]] = ()
    options: ClassVar[tuple[Option, ...]] = ()

    def __init__(self, workspace: str | os.PathLike | None = None, **settings: Any):
        """`workspace` as the user gave it (None: the default, found beside the notebook); `settings` are this
        engine's `options`, already checked by the registry, defaults filled in."""
        self.workspace = workspace
        self.settings = settings

    @classmethod
    def options_for(cls, verb: str) -> tuple[Option, ...]:
        return tuple(o for o in cls.options if verb in o.verbs)

    @classmethod
    def describe(cls) -> dict:
        return {"name": cls.name, "summary": cls.summary, "verbs": list(cls.verbs),
                "options": [o.describe() for o in cls.options if o.shown]}

    def check(self, verb: str) -> None:
        """Whatever can be known wrong before `verb` starts (a missing setting, say), as an MlopsError; the
        registry calls it when the engine is made, so the panel hears of it at once."""

    def cancel(self) -> None:
        """Stop what this engine started; engines that cannot be interrupted leave it as is."""
