"""The Kubeflow Pipelines engine: a run becomes a KFP run of the notebook's pipeline (`export kfp`), a task per step,
submitted and followed through the kfp SDK's client, and recorded in this workspace's store like any other run.

The pipeline is compiled here (kept as <run dir>/pipeline.yaml) with the run's id as its input `mlops_run_id`, so
its tasks work in `<artifacts>/<run id>`, the folder `register` reads for any run. Each task's step
runner (kube/kfp_step.py) brings its executed notebook to `<artifacts>/<run id>/_notebooks/`; this side follows the
KFP run's task states (each step's status as KFP reports it), and on the end copies the notebooks into the run's
folder and reads each step's metrics and error from them, as the local engine does from its own.

A sweep is one KFP run too: the trials a ParallelFor, trial i working in run `<prefix>-i`'s folder.

Ctrl-C (or `cancel`) terminates the KFP run and records the run `cancelled`. An API that cannot be reached, or that
refuses the run, is an error naming --host before anything is recorded.
"""
from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable

from ..errors import MlopsError
from ..records import RunStatus, StepStatus
from .abc import Engine, Option

# KFP's runtime states (V2beta1RuntimeState) as our step statuses; the run ends on the terminal ones
_STEP_STATES = {"PENDING": StepStatus.PENDING, "RUNNING": StepStatus.RUNNING, "SUCCEEDED": StepStatus.SUCCEEDED,
                "FAILED": StepStatus.FAILED, "SKIPPED": StepStatus.SKIPPED, "CANCELING": StepStatus.CANCELLED,
                "CANCELED": StepStatus.CANCELLED}
_ENDED = {"SUCCEEDED": RunStatus.SUCCEEDED, "FAILED": RunStatus.FAILED, "CANCELED": RunStatus.CANCELLED,
          "SKIPPED": RunStatus.FAILED}


def _sdk_client(host: str, namespace: str | None):
    import kfp

    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "only works with KFP v2.0.0-beta.2 and later"
            return kfp.Client(host=host, namespace=namespace)
    except Exception as exc:
        raise MlopsError(f"the Kubeflow Pipelines API at --host {host} did not answer ({_reason(exc)}): give the "
                         "URL of KFP's API (the ml-pipeline service, or the Kubeflow dashboard's /pipeline)") from None


def _reason(exc: Exception) -> str:
    text = str(getattr(exc, "reason", None) or exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


class KfpEngine(Engine):
    name = "kfp"
    summary = "a Kubeflow Pipelines server (--host): a KFP run per notebook run or sweep, a task per step"
    verbs = ("run", "sweep")
    options = (
        Option("host", "the Kubeflow Pipelines API's URL", verbs=verbs),
        Option("image", "the image `jupyter-mlops build` made for the notebook", verbs=verbs),
        Option("cpu", "each pod's CPU request (default 1)", "1", verbs=verbs),
        Option("memory", "each pod's memory (default 2Gi)", "2Gi", verbs=verbs),
        Option("experiment", "the KFP experiment the runs go in", "jupyter-mlops", verbs=verbs),
        Option("namespace", "the namespace (kfp: the Kubeflow profile's, for a multi-user KFP)", verbs=verbs),
        Option("client", "a kfp.Client (default: one for --host)", shown=False),
        Option("poll", "seconds between looks at the run", 2.0, float, verbs=verbs, shown=False),
    )

    def __init__(self, workspace=None, *, host: str | None = None, image: str | None = None, cpu: str = "1",
                 memory: str = "2Gi", experiment: str = "jupyter-mlops", namespace: str | None = None,
                 client=None, poll: float = 2.0):
        super().__init__(workspace)
        self.host, self.image, self.cpu, self.memory = host, image, cpu, memory
        self.experiment, self.namespace, self._client, self.poll = experiment, namespace, client, poll
        self.cancelled = threading.Event()

    def check(self, verb: str) -> None:
        from ..kube.manifests import Target

        if self._client is None and not self.host:
            raise MlopsError("--backend kfp needs --host: the URL of the Kubeflow Pipelines API (e.g. "
                             "http://ml-pipeline.kubeflow:8888)")
        if not self.image:
            raise MlopsError("--backend kfp needs --image: build one with `jupyter-mlops build NOTEBOOK --tag "
                             "REGISTRY/NAME:TAG` and push it where the cluster pulls from")
        Target(self.image, cpu=self.cpu, memory=self.memory).check()
        if self._client is None:
            from ..kube.kfp import sdk

            sdk()  # installed, or an error saying how

    @property
    def client(self):
        if self._client is None:
            self._client = _sdk_client(self.host, self.namespace)
        return self._client

    def cancel(self) -> None:
        self.cancelled.set()

    def run(self, notebook: str | Path, parameters: dict | None = None, *, run_id: str | None = None,
            on_update: Callable | None = None, on_log: Callable[[str], Any] | None = None) -> dict:
        from ..kube.kfp import RUN_ID_INPUT, export
        from ..names import check_run_id
        from ..orchestration import announce, describe_run, record_run, validate
        from ..parameters import coerce_parameters
        from ..workspace import new_run_id
        from .kubernetes import shared_workspace

        pipeline = validate(notebook)
        parameters = coerce_parameters(pipeline.parameters, dict(parameters or {}))
        run_id = check_run_id(run_id) if run_id else new_run_id()
        ws = shared_workspace(self.workspace, notebook, "kfp", "where the pipeline's pods get them from the cluster")
        with tempfile.TemporaryDirectory(prefix="mlops-kfp-") as scratch:
            package = export(notebook, Path(scratch) / "pipeline.yaml", self.image, parameters,
                             artifacts=ws.artifacts_url, cpu=self.cpu, memory=self.memory)
            kfp_run = self._submit(package, {**parameters, RUN_ID_INPUT: run_id},
                                   f"{Path(notebook).stem} {run_id}", on_log)
            # recorded once KFP has the run: a refused submission leaves nothing behind
            record_run(ws, run_id, notebook, pipeline, parameters, owner=f"kfp/{kfp_run}")
            shutil.copyfile(package, ws.run_dir(run_id) / "pipeline.yaml")  # what KFP was given, kept
        follower = _Follower(self, ws, run_id, pipeline, kfp_run, on_update)
        try:
            state, error = follower.follow()
        except MlopsError as exc:  # KFP went away while followed: the run may go on there, but not in our record
            ws.store.finish_run(run_id, RunStatus.FAILED, f"{exc}; see the run in KFP's UI")
            raise
        except KeyboardInterrupt:
            self._terminate(kfp_run)
            follower.collect()
            follower.settle(RunStatus.CANCELLED)
            ws.store.finish_run(run_id, RunStatus.CANCELLED, f"interrupted by the user; KFP run {kfp_run} terminated")
            raise
        follower.collect()
        follower.settle(state)
        follower.report()
        ws.store.finish_run(run_id, state, follower.error(state, error))
        return announce(ws.store, describe_run(ws.store.get_run(run_id)))

    def sweep(self, notebook: str | Path, plan, *, on_trial: Callable | None = None) -> dict:
        """The trials as one KFP run: a ParallelFor over the points (`--parallel` at once), the steps no swept
        parameter reaches run once before it. Trial i is run `<prefix>-i` in the store, working in that run's
        folder, so each trial registers as any run does; the shared steps are `reused` in every trial. Points are
        fixed up front (grid or random): a Bayesian search needs each result before its next point."""
        from ..kube.kfp import RUN_ID_INPUT, export, swept_names
        from ..orchestration import describe_run, record_run
        from ..trials import best_trial
        from ..workspace import new_run_id
        from .kubernetes import shared_workspace

        if plan.search == "bayes":
            raise MlopsError("--search bayes picks each point from the results before it: run it locally (or use a "
                             "grid or --samples N on Kubeflow Pipelines)")
        pipeline, points, metric, direction = plan.pipeline, plan.points.points, plan.metric, plan.direction
        ws = shared_workspace(self.workspace, notebook, "kfp", "where the pipeline's pods get them from the cluster")
        prefix = new_run_id()
        sweep_id, run_ids = f"sweep-{prefix}", [f"{prefix}-{i}" for i in range(len(points))]
        with tempfile.TemporaryDirectory(prefix="mlops-kfp-") as scratch:
            package = export(notebook, Path(scratch) / "pipeline.yaml", self.image, trials=points,
                             trial_folder="-{i}", parallel=plan.parallel, artifacts=ws.artifacts_url, cpu=self.cpu,
                             memory=self.memory)
            kfp_run = self._submit(package, {RUN_ID_INPUT: prefix}, f"{Path(notebook).stem} {sweep_id}", None)
            ws.store.create_sweep(sweep_id, str(Path(notebook).resolve()), plan.space, len(points), metric,
                                  direction)
            for run_id, point in zip(run_ids, points):
                record_run(ws, run_id, notebook, pipeline, point, sweep_id=sweep_id, owner=f"kfp/{kfp_run}")
                shutil.copyfile(package, ws.run_dir(run_id) / "pipeline.yaml")
        shared = frozenset(s.name for s in pipeline.steps if s.name not in pipeline.reached_by(swept_names(points)))
        try:
            state, error = _Follower(self, ws, prefix, pipeline, kfp_run, None, live=False).follow()
        except KeyboardInterrupt:
            self._terminate(kfp_run)
            for run_id in run_ids:
                self._end_trial(ws, run_id, pipeline, kfp_run, prefix, shared, RunStatus.CANCELLED,
                                f"interrupted by the user; KFP run {kfp_run} terminated", None)
            ws.store.finish_sweep(sweep_id, RunStatus.CANCELLED, None)
            raise
        except MlopsError as exc:  # KFP went away while followed: the trials are not left `running`
            for run_id in run_ids:
                ws.store.finish_run(run_id, RunStatus.FAILED, f"{exc}; see the run in KFP's UI")
            ws.store.finish_sweep(sweep_id, RunStatus.FAILED, None)
            raise
        results = [self._end_trial(ws, run_id, pipeline, kfp_run, prefix, shared, state, error, on_trial)
                   for run_id in run_ids]
        best = best_trial(results, metric, direction)
        status = state if state == RunStatus.CANCELLED else (
            RunStatus.SUCCEEDED if any(r["status"] == RunStatus.SUCCEEDED for r in results) else RunStatus.FAILED)
        ws.store.finish_sweep(sweep_id, status, best["id"] if best else None)
        return {"id": sweep_id, "status": status, "metric": metric, "direction": direction,
                "shared_steps": sorted(shared), "best": best, "trials": [describe_run(ws.store.get_run(r))
                                                                           for r in run_ids]}

    def _end_trial(self, ws, run_id: str, pipeline, kfp_run: str, prefix: str, shared: frozenset, state: str,
                   error: str | None, on_trial: Callable | None) -> dict:
        """A trial's steps from the notebooks its tasks left, and its status from theirs."""
        from ..orchestration import describe_run

        trial = _Follower(self, ws, run_id, pipeline, kfp_run, None, shared=prefix, live=False)
        trial.collect(shared)
        steps = trial.steps.values()
        if state == RunStatus.CANCELLED:
            outcome = RunStatus.CANCELLED
        elif any(r.status == StepStatus.FAILED for r in steps):
            outcome = RunStatus.FAILED
        elif all(r.status in (StepStatus.SUCCEEDED, StepStatus.REUSED) for r in steps):
            outcome = RunStatus.SUCCEEDED
        else:
            outcome, error = RunStatus.FAILED, f"the trial did not finish: {error or 'the KFP run failed'}"
        trial.settle(outcome)
        ws.store.finish_run(run_id, outcome, trial.error(outcome, error))
        view = describe_run(ws.store.get_run(run_id))
        if on_trial:
            on_trial(view)
        return view

    def _submit(self, package: Path, arguments: dict, name: str, on_log: Callable | None) -> str:
        said = io.StringIO()
        try:
            # the SDK prints the run's link: it goes to the log instead (for the moment of the call, so a print
            # from another thread in that moment lands there too)
            with contextlib.redirect_stdout(said):
                result = self.client.create_run_from_pipeline_package(
                    str(package), arguments=arguments, run_name=name, experiment_name=self.experiment,
                    namespace=self.namespace, enable_caching=False)
        except MlopsError:
            raise
        except Exception as exc:
            raise MlopsError(f"Kubeflow Pipelines at --host {self.host} refused the run: {_reason(exc)}") from None
        if on_log:
            for line in said.getvalue().splitlines():
                on_log(line)
        return result.run_id

    def _terminate(self, kfp_run: str) -> None:
        try:
            self.client.terminate_run(kfp_run)
        except Exception:
            pass  # already ended, or unreachable: the run's record is what matters here


class _Follower:
    """One KFP run followed to its end: step statuses as KFP reports them, then what the tasks left brought home."""

    def __init__(self, engine: KfpEngine, ws, run_id: str, pipeline, kfp_run: str, on_update: Callable | None,
                 shared: str | None = None, live: bool = True):
        """`shared`: a sweep trial's: the run id whose folder holds the steps run once for every trial (they are
        `reused` here); `live`: whether KFP's task states are this run's steps' (a sweep's tasks are many trials')."""
        from .steps import StepResult

        self.engine, self.ws, self.run_id, self.pipeline, self.kfp_run = engine, ws, run_id, pipeline, kfp_run
        self.on_update, self.shared, self.live = on_update, shared, live
        self.steps = {s.name: StepResult(s.name) for s in pipeline.steps}

    def follow(self) -> tuple[str, str | None]:
        """Until the KFP run ends: (our run status, KFP's error message)."""
        while True:
            if self.engine.cancelled.is_set():
                self.engine._terminate(self.kfp_run)
                return RunStatus.CANCELLED, f"cancelled; KFP run {self.kfp_run} terminated"
            try:
                run = self.engine.client.get_run(self.kfp_run)
            except Exception as exc:
                raise MlopsError(f"lost Kubeflow Pipelines at --host {self.engine.host} while following run "
                                 f"{self.kfp_run}: {_reason(exc)}") from None
            if self.live:
                self._tasks(run)
            state = str(run.state or "")
            if state in _ENDED:
                message = getattr(run.error, "message", None) if run.error else None
                return _ENDED[state], message
            self.engine.cancelled.wait(self.engine.poll)

    def _tasks(self, run) -> None:
        """Each step's status from its task's, told to on_update when it changes."""
        for task in (run.run_details.task_details if run.run_details else None) or []:
            if task.child_tasks:  # a DAG's own entry (the root, a loop), not a step's task
                continue
            result = self.steps.get(task.display_name)
            status = _STEP_STATES.get(str(task.state or ""))
            if result is None or status is None or status == result.status:
                continue
            result.status = status
            result.started = result.started or _epoch(task.start_time)
            if status != StepStatus.RUNNING:
                result.finished = _epoch(task.end_time) or time.time()
            if task.error is not None and task.error.message:
                result.error = task.error.message
            self.ws.store.update_step(self.run_id, result.name, status=status, started=result.started,
                                      finished=result.finished, duration=result.duration)
            if self.on_update and status == StepStatus.RUNNING:  # how each ended is told once collected
                self.on_update(result)

    def collect(self, shared_steps: frozenset = frozenset()) -> None:
        """The executed notebooks the tasks brought home, into the run's folder; each step's metrics and error
        read from its notebook (a failed step's is its partial one). A step whose end KFP did not report (a
        sweep's, or a task KFP names otherwise) takes its status from its notebook. `shared_steps`: a sweep
        trial's steps that ran once for all trials, in the folder of `self.shared`."""
        import fsspec

        from ..compile import step_filename
        from ..kube.kfp_step import NOTEBOOKS
        from ..metrics import read_metrics
        from .steps import StepExecutor

        folder = self.ws.run_dir(self.run_id) / "steps"
        folder.mkdir(parents=True, exist_ok=True)
        for i, step in enumerate(self.pipeline.steps):
            result, name = self.steps[step.name], step_filename(i, step)
            owner = self.shared if step.name in shared_steps else self.run_id
            fs, base = fsspec.core.url_to_fs(f"{self.ws.artifacts(owner)}/{NOTEBOOKS}")
            local = folder / name
            try:
                fs.get_file(f"{base}/{name}", str(local))
            except (FileNotFoundError, OSError):
                continue  # the task never ran (skipped, or KFP failed it before its container started)
            result.output_notebook = str(local)
            error = _notebook_error(local)
            if result.status in (StepStatus.PENDING, StepStatus.RUNNING):
                result.status = StepStatus.FAILED if error else (
                    StepStatus.REUSED if step.name in shared_steps else StepStatus.SUCCEEDED)
            if result.status in (StepStatus.SUCCEEDED, StepStatus.REUSED):  # a failed step's metrics: not results
                result.metrics = read_metrics(str(local))
            elif result.status == StepStatus.FAILED:
                result.cell = StepExecutor._failed_source_cell(local)
                result.error = error or result.error
            self.ws.store.update_step(self.run_id, step.name, status=result.status, output_notebook=str(local),
                                      error=result.error, cell=result.cell)
            self.ws.store.record_metrics(self.run_id, step.name, result.metrics)

    def report(self) -> None:
        """How each step ended, with its metrics and error, to on_update."""
        for result in self.steps.values():
            if self.on_update and result.status != StepStatus.PENDING:
                self.on_update(result)

    def settle(self, status: str) -> None:
        """Steps whose end KFP did not report before the run's: those of a run that succeeded succeeded; after a
        failure the ones never started were skipped; a cancelled run's were cancelled."""
        left = {RunStatus.SUCCEEDED: StepStatus.SUCCEEDED, RunStatus.CANCELLED: StepStatus.CANCELLED}.get(
            status, StepStatus.SKIPPED)
        for result in self.steps.values():
            if result.status in (StepStatus.PENDING, StepStatus.RUNNING):
                result.status = left
                self.ws.store.update_step(self.run_id, result.name, status=left)

    def error(self, status: str, message: str | None) -> str | None:
        """The run's error, worded as a local run's: the first failed step, its cell and its exception."""
        if status == RunStatus.SUCCEEDED:
            return None
        if status == RunStatus.CANCELLED:
            return message
        failed = next((r for r in self.steps.values() if r.status == StepStatus.FAILED), None)
        if failed is None:
            return f"KFP run {self.kfp_run} failed: {message or 'no reason given'}"
        cell = f"cell {failed.cell} of {Path(self.pipeline.notebook).name}, " if failed.cell else ""
        why = failed.error or message or "its task failed"
        return f"step `{failed.name}` failed ({cell}KFP run {self.kfp_run}): {why}"


def _notebook_error(path: Path) -> str | None:
    """`Name: message` of the exception an executed notebook holds."""
    import json

    for cell in json.loads(path.read_text()).get("cells", []):
        for output in cell.get("outputs", []) or []:
            if output.get("output_type") == "error":
                return f"{output.get('ename')}: {output.get('evalue')}"
    return None


def _epoch(when: Any) -> float | None:
    """A KFP timestamp (a datetime, or RFC 3339 text) as epoch seconds; None for none (KFP's zero time too)."""
    from datetime import datetime

    if when is None:
        return None
    if isinstance(when, str):
        try:
            when = datetime.fromisoformat(when.replace("Z", "+00:00"))
        except ValueError:
            return None
    seconds = when.timestamp()
    return seconds if seconds > 0 else None
