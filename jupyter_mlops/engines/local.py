"""The embedded engine: each step runs in its own kernel through papermill, in this process, in DAG order.

Why it is nearly as fast as one papermill run of the whole notebook:
- papermill runs in-process (no CLI start-up per step);
- a step's kernel starts, and imports what its setup cells import, as soon as the steps it depends on have begun,
  so kernel start-up and heavy imports overlap the upstream work;
- independent steps run in parallel (bounded by `max_parallel`).

A kernel that dies fails its step at once with the reason (signal, exit code); the executed notebook, partial on
failure, is always written.
"""
from __future__ import annotations

import logging
import os
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..analysis import imported_modules
from ..compile import ARTIFACTS_PARAMETER
from ..pipeline import Pipeline, Step, _source

log = logging.getLogger(__name__)

TERMINAL = ("succeeded", "failed", "cancelled", "skipped", "reused")


@dataclass
class StepResult:
    name: str
    status: str = "pending"
    started: float | None = None
    finished: float | None = None
    output_notebook: str | None = None
    error: str | None = None
    cell: int | None = None  # 1-based cell of the source notebook where it failed
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def duration(self) -> float | None:
        return self.finished - self.started if self.started and self.finished else None


def _signal_name(code: int) -> str:
    import signal

    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def kernel_death_reason(km: Any) -> str:
    """Why a kernel process is gone, in words a user can act on."""
    process = getattr(getattr(km, "provisioner", None), "process", None)
    code = process.poll() if process is not None else None
    if code is None:
        return "the kernel died"
    if code < 0:
        hint = " (killed: out of memory, or stopped by another process)" if -code == 9 else ""
        return f"the kernel died: {_signal_name(code)}{hint}"
    return f"the kernel exited with code {code}"


class LocalEngine:
    """Runs one pipeline's steps; reports progress through `on_update(StepResult)`."""

    def __init__(self, pipeline: Pipeline, step_notebooks: dict[str, Path], output_dir: Path, artifacts: str,
                 parameters: dict[str, Any], max_parallel: int | None = None, timeout: float | None = None,
                 on_update: Callable[[StepResult], None] = lambda r: None):
        self.pipeline = pipeline
        self.step_notebooks = step_notebooks
        self.output_dir = Path(output_dir)
        self.artifacts = artifacts
        self.parameters = parameters
        self.max_parallel = max(1, max_parallel or os.cpu_count() or 2)
        self.timeout = timeout
        self.on_update = on_update
        self.cwd = str(Path(pipeline.notebook).resolve().parent)
        self.results: dict[str, StepResult] = {s.name: StepResult(s.name) for s in pipeline.steps}
        self._state = threading.Condition()
        self._executing = threading.Semaphore(self.max_parallel)
        self._kernels = threading.Semaphore(self.max_parallel + 1)  # one spare: the next step's warm kernel
        self._live: dict[str, Any] = {}
        self._cancelled = False

    # -- public ------------------------------------------------------------------------------------------------
    def execute(self, reuse: set[str] = frozenset()) -> dict[str, StepResult]:
        """Run every step not in `reuse` (those keep their artifacts from an earlier run)."""
        logging.getLogger("papermill").setLevel(logging.WARNING)
        logging.getLogger("traitlets").setLevel(logging.CRITICAL)  # nbclient's "Kernel died..." : we say why
        for name in reuse:
            self._set(name, status="reused")
        threads = [threading.Thread(target=self._worker, args=(s,), name=f"mlops-step-{s.name}", daemon=True)
                   for s in self.pipeline.steps if s.name not in reuse]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.2)  # short joins keep Ctrl-C responsive
        except KeyboardInterrupt:
            self.cancel()
            for t in threads:
                t.join(30)
            raise
        return self.results

    def cancel(self) -> None:
        """Stop everything: no new step starts, live kernels are shut down."""
        with self._state:
            self._cancelled = True
            live = list(self._live.values())
            self._state.notify_all()
        for km in live:
            self._shutdown(km)

    # -- internals ---------------------------------------------------------------------------------------------
    def _set(self, name: str, **values: Any) -> None:
        with self._state:
            result = self.results[name]
            for key, value in values.items():
                setattr(result, key, value)
            self._state.notify_all()
        self.on_update(result)

    def _wait_for(self, step: Step, states: tuple[str, ...]) -> bool:
        """Block until every dependency is in one of `states` (or finished); False if one did not succeed."""
        with self._state:
            self._state.wait_for(lambda: self._cancelled or all(
                self.results[d].status in states + TERMINAL for d in step.depends_on))
            blocked = [d for d in step.depends_on
                       if self.results[d].status in TERMINAL and self.results[d].status not in ("succeeded", "reused")]
            return not self._cancelled and not blocked

    def _worker(self, step: Step) -> None:
        try:
            if not self._wait_for(step, ("running",)):
                return self._not_run(step)
            with self._kernels:
                km = self._start_kernel(step)
                try:
                    if not self._wait_for(step, ()):
                        return self._not_run(step)
                    with self._executing:
                        self._run_step(step, km)
                finally:
                    self._shutdown(km)
                    with self._state:
                        self._live.pop(step.name, None)
        except Exception as exc:  # never leave a step `running` because of our own bug
            log.exception("step %s", step.name)
            self._set(step.name, status="failed", finished=time.time(), error=f"internal error: {exc!r}")

    def _not_run(self, step: Step) -> None:
        self._set(step.name, status="cancelled" if self._cancelled else "skipped")

    def _start_kernel(self, step: Step) -> Any:
        from jupyter_client.manager import AsyncKernelManager
        from jupyter_core.utils import run_sync

        # IPC sockets under a unique prefix: no TCP ports to race for, and the kernel does not warn about
        # unencrypted TCP on every start
        prefix = os.path.join(tempfile.gettempdir(), f"mlops-{secrets.token_hex(6)}")
        km = AsyncKernelManager(kernel_name=self.pipeline.kernel_name, transport="ipc", ip=prefix)
        env = {**os.environ, "MLOPS_STEP": step.name, "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
        run_sync(km.start_kernel)(cwd=self.cwd, env=env)
        with self._state:
            self._live[step.name] = km
            cancelled = self._cancelled
        if not cancelled:
            self._warm_up(km, step)
        return km

    def _warm_up(self, km: Any, step: Step) -> None:
        """Import what the step will import, so its cells find the modules loaded; binds no names."""
        from jupyter_core.utils import run_sync

        modules: list[str] = []
        for i in [*self.pipeline.setup_cells, *step.cells]:
            modules += imported_modules(_source(self.pipeline.cells[i]))
        modules += [m for stmt in step.imports.values() for m in imported_modules(stmt)]
        if step.inputs or step.outputs:
            modules.append("jupyter_mlops.artifacts")
        code = ("import importlib as _il\nfor _m in %r:\n    try:\n        _il.import_module(_m)\n"
                "    except Exception:\n        pass\ndel _il, _m\n") % list(dict.fromkeys(modules))
        kc = km.client()
        kc.start_channels()
        try:
            run_sync(kc.wait_for_ready)(timeout=120)
            run_sync(kc.execute_interactive)(code, silent=True, store_history=False, timeout=300)
        except Exception as exc:  # warming is an optimisation: the step itself will report real problems
            log.debug("warm-up of %s failed: %r", step.name, exc)
        finally:
            kc.stop_channels()

    def _shutdown(self, km: Any) -> None:
        from jupyter_core.utils import run_sync

        try:
            if run_sync(km.is_alive)():
                run_sync(km.shutdown_kernel)(now=True)
            else:
                run_sync(km.cleanup_resources)()
        except Exception as exc:
            log.debug("kernel shutdown: %r", exc)

    def _run_step(self, step: Step, km: Any) -> None:
        import papermill
        from nbclient.exceptions import DeadKernelError

        source = self.step_notebooks[step.name]
        output = self.output_dir / source.name
        output.parent.mkdir(parents=True, exist_ok=True)
        self._set(step.name, status="running", started=time.time(), output_notebook=str(output))
        params = {**self.parameters, ARTIFACTS_PARAMETER: self.artifacts}
        status, error, cell = "succeeded", None, None
        try:
            papermill.execute_notebook(
                str(source), str(output), parameters=params, kernel_name=self.pipeline.kernel_name,
                progress_bar=False, log_output=False, cwd=self.cwd, km=km,
                execution_timeout=self.timeout, start_timeout=120)
        except papermill.PapermillExecutionError as exc:
            status, cell = "failed", self._failed_source_cell(output)
            error = f"{exc.ename}: {exc.evalue}"
        except DeadKernelError:
            status, error = "failed", kernel_death_reason(km)
            self._note_in_notebook(output, error)
        except Exception as exc:  # timeouts, kernel start failures, unreadable notebooks
            status, error = "failed", f"{type(exc).__name__}: {exc}"
            self._note_in_notebook(output, error)
        if self._cancelled and status == "failed":
            status, error = "cancelled", "cancelled"
        metrics: dict[str, float] = {}
        if status == "succeeded":
            from ..metrics import read_metrics

            metrics = read_metrics(str(output))
        self._set(step.name, status=status, finished=time.time(), error=error, cell=cell, metrics=metrics)

    @staticmethod
    def _failed_source_cell(output: Path) -> int | None:
        """The source notebook's cell number of the cell that raised (papermill inserts banner cells, so the
        failing cell is found by its error output, then mapped back through our cell metadata)."""
        if not output.exists():
            return None
        import nbformat

        for cell in nbformat.read(str(output), as_version=4).cells:
            failed = cell.get("metadata", {}).get("papermill", {}).get("exception") is True or any(
                o.get("output_type") == "error" for o in cell.get("outputs", []))
            if cell.cell_type == "code" and failed:
                return cell.metadata.get("mlops", {}).get("source_cell")
        return None

    @staticmethod
    def _note_in_notebook(output: Path, message: str) -> None:
        """Put the reason at the top of the kept (partial) output notebook, where a reader looks first."""
        if not output.exists():
            return
        import nbformat
        import nbformat.v4 as v4

        nb = nbformat.read(str(output), as_version=4)
        nb.cells.insert(0, v4.new_markdown_cell(f"**jupyter-mlops: this step failed: {message}**"))
        nbformat.write(nb, str(output))
