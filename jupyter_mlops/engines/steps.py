"""One pipeline's steps, run by the embedded engine: each through papermill, in this process, in DAG order, on a
warm kernel.

Why it is nearly as fast as one papermill run of the whole notebook:
- papermill runs in-process (no CLI start-up per step);
- kernels start while the notebook is compiled and the run recorded, and import the notebook's modules before a
  step needs them (see kernels.py); between steps a kernel's namespace is wiped, so it can serve the next step;
- independent steps run in parallel (bounded by `max_parallel`).

A kernel that dies fails its step at once with the reason (signal, exit code); the executed notebook, partial on
failure, is always written.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..analysis import imported_modules
from ..compile import ARTIFACTS_PARAMETER
from ..data_checks import THRESHOLDS, compare, ranges_of
from ..files import papermill_writes_atomically, write_notebook
from ..pipeline import Pipeline, Step, _source
from ..records import FINISHED_STEP, USABLE_STEP, StepStatus
from .kernels import RESET, KernelPool, KernelStartError, close_thread_loop, kernel_death_reason

log = logging.getLogger(__name__)



@dataclass
class StepResult:
    name: str
    status: str = StepStatus.PENDING
    started: float | None = None
    finished: float | None = None
    output_notebook: str | None = None
    error: str | None = None
    cell: int | None = None  # 1-based cell of the source notebook where it failed
    metrics: dict[str, float] = field(default_factory=dict)
    data_reads: dict | None = None  # {"reads": [...], "writes": [...]} the step reported (data_reads.py)

    @property
    def duration(self) -> float | None:
        return self.finished - self.started if self.started and self.finished else None


def notebook_modules(pipeline: Pipeline) -> list[str]:
    """Every module the notebook's pipeline cells import, to load into kernels ahead of the steps."""
    modules: list[str] = []
    for i in [*pipeline.setup_cells, *(c for s in pipeline.steps for c in s.cells)]:
        modules += imported_modules(_source(pipeline.cells[i]))
    if any(s.inputs or s.outputs for s in pipeline.steps):
        modules.append("jupyter_mlops.artifacts")
    return modules + ["jupyter_mlops.data_reads"]  # every step notes the data it reads


def dag_width(pipeline: Pipeline) -> int:
    """How many steps can run at once: the largest group of steps at the same depth of the DAG."""
    depth: dict[str, int] = {}
    for step in pipeline.steps:
        depth[step.name] = 1 + max((depth[d] for d in step.depends_on), default=0)
    counts: dict[int, int] = {}
    for d in depth.values():
        counts[d] = counts.get(d, 0) + 1
    return max(counts.values(), default=1)


def kernel_pool(pipeline: Pipeline, size: int, fresh_kernels: bool = False) -> KernelPool:
    """Warm kernels for this pipeline's steps (a spare one when every step takes a fresh kernel)."""
    cwd = str(Path(pipeline.notebook).resolve().parent)
    return KernelPool(pipeline.kernel_name, cwd, size + 1 if fresh_kernels else size, notebook_modules(pipeline),
                      fresh_kernels=fresh_kernels)


def early_pool(notebook: str, fresh_kernels: bool = False) -> KernelPool:
    """A pool whose first kernel starts before the notebook is even analysed (only its kernel name is read);
    `configure_pool` sizes and warms it once the pipeline is known."""
    import json

    # what starting a kernel imports, imported here first: the analysis imports IPython on this thread meanwhile,
    # and two threads importing IPython at once can each find the other's half-initialised modules
    import IPython.core.inputtransformer2  # noqa: F401
    import ipykernel.kernelspec  # noqa: F401
    import jupyter_client.manager  # noqa: F401
    import jupyter_client.provisioning  # noqa: F401

    try:
        with open(notebook, encoding="utf-8") as f:
            kernel = json.load(f).get("metadata", {}).get("kernelspec", {}).get("name") or "python3"
    except (OSError, ValueError):
        kernel = "python3"  # validation will say what is wrong with the file
    return KernelPool(kernel, str(Path(notebook).resolve().parent), 1, None, fresh_kernels=fresh_kernels)


def configure_pool(pool: KernelPool, pipeline: Pipeline, max_parallel: int | None) -> None:
    width = min(max(1, max_parallel or os.cpu_count() or 2), dag_width(pipeline))
    pool.configure(width + 1 if pool.fresh_kernels else width, notebook_modules(pipeline))


SAVE_EVERY = 1.0  # seconds between saves of a step's output notebook while it runs
_PAPERMILL_ENGINE = "mlops"
_registered = False


def papermill_engine() -> str:
    """papermill's nbclient engine, registered under our name, with one difference: while a step runs, its
    output notebook is saved at most every SAVE_EVERY seconds instead of at the start and end of every cell (each
    save serialises and validates the whole notebook: a third of a short step's time), and written once at the end,
    by papermill, not twice. The first save, the last (after success, failure or a dead kernel) and the error
    banner's are always made, so a failed step keeps its partial notebook as before."""
    global _registered
    if _registered:
        return _PAPERMILL_ENGINE
    from papermill.engines import NBClientEngine, NotebookExecutionManager, papermill_engines

    class ThrottledSaves(NotebookExecutionManager):
        final = False
        saved_at = float("-inf")

        def save(self, **kwargs):
            now = time.monotonic()
            if self.final or now - self.saved_at >= SAVE_EVERY:
                super().save(**kwargs)
                self.saved_at = now

        def notebook_complete(self, **kwargs):
            super().notebook_complete(**kwargs)  # saved only after an exception (final): see execute_notebook

    class StepEngine(NBClientEngine):
        @classmethod
        def execute_notebook(cls, nb, kernel_name, output_path=None, progress_bar=True, log_output=False,
                             autosave_cell_every=30, **kwargs):
            manager = ThrottledSaves(nb, output_path=output_path, progress_bar=progress_bar, log_output=log_output,
                                     autosave_cell_every=autosave_cell_every)
            manager.notebook_start()
            try:
                cls.execute_managed_notebook(manager, kernel_name, log_output=log_output, **kwargs)
            except BaseException:
                manager.final = True  # the partial notebook is saved now: nothing else will
                raise
            finally:
                manager.cleanup_pbar()
                manager.notebook_complete()
            return manager.nb  # papermill writes it next (with an error banner if a cell failed)

        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None,
                                     stderr_file=None, start_timeout=60, execution_timeout=None, **kwargs):
            # as papermill's NBClientEngine, with our client
            kwargs = {k: v for k, v in kwargs.items() if k not in ("input_path", "timeout", "startup_timeout")}
            return step_client(nb_man, timeout=execution_timeout, startup_timeout=start_timeout,
                               kernel_name=kernel_name, log=logging.getLogger("papermill"), log_output=log_output,
                               stdout_file=stdout_file, stderr_file=stderr_file, **kwargs).execute()

    papermill_engines.register(_PAPERMILL_ENGINE, StepEngine)  # again from a second thread: the same class, harmless
    _registered = True
    return _PAPERMILL_ENGINE


# silent requests to the step's kernel (a kernel without jupyter-mlops installed simply records nothing): the
# record of what the step reads starts before its first cell; the end, with the profiles of its outputs, is taken
# before the wipe, and read back by the wipe's user expression
WATCH = "__import__('jupyter_mlops.data_reads', fromlist=['watch']).watch({artifacts!r})"
FINISH = ("try:\n    __import__('jupyter_mlops.data_reads', fromlist=['finish'])"
          ".finish(get_ipython().user_ns, {spec!r})\nexcept Exception:\n    pass\n")
REPORT = "__import__('jupyter_mlops.data_reads', fromlist=['last_json']).last_json()"


def _data_reads(reply: dict | None) -> dict | None:
    """The step's data reads from the wipe's reply: its user expression's value is the repr of a JSON text."""
    import ast
    import json

    found = ((reply or {}).get("content", {}).get("user_expressions") or {}).get("data") or {}
    if found.get("status") != "ok":
        return None
    try:
        return json.loads(ast.literal_eval(found["data"]["text/plain"]))
    except (KeyError, ValueError, SyntaxError):
        return None


def step_client(nb_man: Any, **kwargs: Any) -> Any:
    """papermill's notebook client for one step on a pooled kernel, with four differences:
    - its channels are closed when the step ends: given a kernel manager, nbclient leaves them open for good (ten
      sockets and a heartbeat thread leaked per step, thousands over a sweep);
    - the kernel is wiped for the next step over this client, not over a new one (kernels.reset_namespace);
    - the kernel's language_info is asked for once per kernel, not once per step;
    - the data the step reads is noted (data_reads.py): a silent request before its first cell starts the record
      (its reply is not waited for: the kernel answers requests in order), and the wipe's request brings the
      report back (`km.mlops_data_reads`)."""
    from papermill.clientwrap import PapermillNotebookClient

    class StepClient(PapermillNotebookClient):
        def execute(self, **kwargs):
            self.reset_execution_trackers()
            with self.setup_kernel(**kwargs):
                try:
                    self.kc.execute(WATCH.format(artifacts=self.km.mlops_step_io["artifacts"]), silent=True,
                                    store_history=False, allow_stdin=False)
                    self.papermill_execute_cells()
                    if getattr(self.km, "mlops_language_info", None) is None:
                        info = self.wait_for_reply(self.kc.kernel_info())
                        self.km.mlops_language_info = info["content"]["language_info"]
                    self.nb.metadata["language_info"] = self.km.mlops_language_info
                    self.set_widgets_metadata()
                    self._wipe()
                finally:
                    self.kc.stop_channels()
            return self.nb

        def _wipe(self) -> None:
            """Reached only when every cell ran or one raised: after a timeout nbclient's readers may still be on
            this client, and that kernel is replaced anyway."""
            finish = FINISH.format(spec=json.dumps(self.km.mlops_step_io["finish"]))
            reply = self.wait_for_reply(self.kc.execute(finish + RESET, silent=True, store_history=False,
                                                        allow_stdin=False, user_expressions={"data": REPORT}))
            self.km.mlops_wiped = bool(reply) and reply["content"]["status"] == "ok"
            self.km.mlops_data_reads = _data_reads(reply)

    return StepClient(nb_man, **kwargs)


class StepExecutor:
    """Runs one pipeline's steps; reports progress through `on_update(StepResult)`."""

    def __init__(self, pipeline: Pipeline, output_dir: Path, artifacts: str, parameters: dict[str, Any],
                 max_parallel: int | None = None, timeout: float | None = None, fresh_kernels: bool = False,
                 on_update: Callable[[StepResult], None] = lambda r: None, pool: KernelPool | None = None,
                 baseline: dict | None = None, baseline_run: str | None = None,
                 data_checks: tuple[str, dict] = ("warn", THRESHOLDS)):
        """`baseline`: {step: {output: profile}} of the notebook's baseline run `baseline_run`, which the
        outputs' profiles are checked against (data_checks.py) in mode `data_checks` (mode, thresholds)."""
        self.pipeline = pipeline
        self.output_dir = Path(output_dir)
        self.artifacts = artifacts
        self.parameters = parameters
        self.max_parallel = max(1, max_parallel or os.cpu_count() or 2)
        self.timeout = timeout
        self.on_update = on_update
        self.cwd = str(Path(pipeline.notebook).resolve().parent)
        self.results: dict[str, StepResult] = {s.name: StepResult(s.name) for s in pipeline.steps}
        self.attempts: dict[str, int] = {}  # earlier attempts per step (resume), for the store's count
        self.baseline, self.baseline_run, self.data_checks = baseline or {}, baseline_run, data_checks
        self._state = threading.Condition()
        self._cancelled = False
        self._owns_pool = pool is None
        # start kernels now: they warm up while the caller compiles the bundle and records the run
        self.pool = pool or kernel_pool(pipeline, min(self.max_parallel, dag_width(pipeline)), fresh_kernels)

    # -- public ------------------------------------------------------------------------------------------------
    def execute(self, step_notebooks: dict[str, Path], reuse: set[str] = frozenset(),
                only: set[str] | None = None) -> dict[str, StepResult]:
        """Run every step not in `reuse` (those keep their artifacts from an earlier run), or just those in
        `only`; a later call runs the rest (a sweep runs its shared steps first, once)."""
        logging.getLogger("papermill").setLevel(logging.WARNING)
        logging.getLogger("traitlets").setLevel(logging.CRITICAL)  # nbclient's "Kernel died...": we say why
        self.step_notebooks = step_notebooks
        for name in reuse:
            if self.results[name].status != StepStatus.SUCCEEDED:
                self._set(name, status=StepStatus.REUSED)
        todo = [s for s in self.pipeline.steps if s.name not in reuse and (only is None or s.name in only)
                and self.results[s.name].status == StepStatus.PENDING]
        threads = [threading.Thread(target=self._worker, args=(s,), name=f"mlops-step-{s.name}", daemon=True)
                   for s in todo]
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
            self._settle()
            raise
        finally:
            if self._owns_pool and only is None:
                self.pool.close()
        if self._cancelled:
            self._settle()
        return self.results

    def _settle(self) -> None:
        """After a cancel: whatever a worker could not report is cancelled too."""
        for result in list(self.results.values()):
            if result.status not in FINISHED_STEP:
                self._set(result.name, status=StepStatus.CANCELLED, error=StepStatus.CANCELLED,
                          finished=time.time() if result.started else None)

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        """Stop everything: no new step starts, every kernel is shut down."""
        with self._state:
            self._cancelled = True
            self._state.notify_all()
        self.pool.close()

    def close(self) -> None:
        if self._owns_pool:
            self.pool.close()

    # -- internals ---------------------------------------------------------------------------------------------
    def _set(self, name: str, **values: Any) -> None:
        with self._state:
            result = self.results[name]
            for key, value in values.items():
                setattr(result, key, value)
            self._state.notify_all()
        self.on_update(result)

    def _worker(self, step: Step) -> None:
        try:
            with self._state:
                self._state.wait_for(lambda: self._cancelled or all(
                    self.results[d].status in FINISHED_STEP for d in step.depends_on))
                ready = not self._cancelled and all(
                    self.results[d].status in USABLE_STEP for d in step.depends_on)
            if not ready:
                return self._set(step.name, status=StepStatus.CANCELLED if self._cancelled else StepStatus.SKIPPED)
            try:
                km = self.pool.acquire()
            except KernelStartError as exc:
                status = StepStatus.CANCELLED if self._cancelled or self.pool.closed else StepStatus.FAILED
                return self._set(step.name, status=status, error=str(exc), finished=time.time())
            healthy = False
            try:
                healthy = self._run_step(step, km)
            finally:
                self.pool.release(km, reusable=healthy)
        except Exception as exc:  # never leave a step `running` because of our own bug
            log.exception("step %s", step.name)
            self._set(step.name, status=StepStatus.FAILED, finished=time.time(), error=f"internal error: {exc!r}")
        finally:
            close_thread_loop()

    def _run_step(self, step: Step, km: Any) -> bool:
        """Execute one step; returns whether its kernel is fit to serve another step."""
        import papermill
        from nbclient.exceptions import DeadKernelError

        papermill_writes_atomically()
        engine = papermill_engine()

        source = self.step_notebooks[step.name]
        output = self.output_dir / source.name
        output.parent.mkdir(parents=True, exist_ok=True)
        self._set(step.name, status=StepStatus.RUNNING, started=time.time(), output_notebook=str(output))
        params = {**self.parameters, ARTIFACTS_PARAMETER: self.artifacts}
        baseline = self.baseline.get(step.name) or {}
        km.mlops_data_reads = None  # what StepClient hears of the step's data (data_reads.py, data_checks.py)
        km.mlops_step_io = {"artifacts": self.artifacts,
                            "finish": {"outputs": list(step.outputs), "ranges": ranges_of(baseline)}}
        status, error, cell, healthy = StepStatus.SUCCEEDED, None, None, True
        executed = None
        try:
            executed = papermill.execute_notebook(
                str(source), str(output), parameters=params, kernel_name=self.pipeline.kernel_name,
                progress_bar=False, log_output=False, cwd=self.cwd, km=km, engine_name=engine,
                execution_timeout=self.timeout, start_timeout=120)
        except papermill.PapermillExecutionError as exc:
            status, cell = StepStatus.FAILED, self._failed_source_cell(output)
            error = f"{exc.ename}: {exc.evalue}"
        except DeadKernelError:
            status, error, healthy = StepStatus.FAILED, kernel_death_reason(km), False
            self._note_in_notebook(output, error)
        except BaseException as exc:  # timeouts, lost kernels; nbclient's tasks may end in CancelledError
            status, error, healthy = StepStatus.FAILED, f"{type(exc).__name__}: {exc}", False
            self._note_in_notebook(output, error)
        if (self._cancelled or self.pool.closed) and status == StepStatus.FAILED:
            status, error = StepStatus.CANCELLED, StepStatus.CANCELLED
        reads = getattr(km, "mlops_data_reads", None)
        if reads is not None and status == StepStatus.SUCCEEDED and baseline and self.data_checks[0] != "off":
            reads["findings"] = compare(step.name, baseline, reads.get("profiles") or {}, self.data_checks[1])
            reads["baseline"] = self.baseline_run
            if reads["findings"] and self.data_checks[0] == "strict":
                more = len(reads["findings"]) - 1
                status = StepStatus.FAILED
                error = f"data check failed: {reads['findings'][0]['message']}" + (
                    f" (and {more} more finding{'s' * (more > 1)})" if more else "")
                self._note_in_notebook(output, error)
        metrics: dict[str, float] = {}
        if status == StepStatus.SUCCEEDED and executed is not None:
            from ..metrics import metrics_in

            metrics = metrics_in(executed)  # the notebook papermill just wrote, not read back from disk
        self._set(step.name, status=status, finished=time.time(), error=error, cell=cell, metrics=metrics,
                  data_reads=reads)
        return healthy

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
        write_notebook(nb, output)
