"""Running the trials of a sweep: each a run in the store, grouped by the sweep id, on one shared pool of warm
kernels; the steps that no swept parameter reaches run once, in the first trial, and the others read their
outputs. Points come from a fixed list (grid, random samples) or from Optuna, asked one at a time as trials end.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import MlopsError
from .records import RunStatus, StepStatus, SweepView
from .search_space import MAX_TRIALS, Dimension, expand


class FixedPoints:
    """A grid, or random samples: known up front."""

    def __init__(self, swept: list[Dimension], fixed: dict, samples: int | None, seed: int, max_trials: int):
        self.points = [{**fixed, **p} for p in expand(swept, samples, seed, max_trials)]
        self.total = len(self.points)
        self.adaptive = False  # nothing to learn from finished trials

    def ask(self) -> tuple[dict, Any] | None:
        return (self.points.pop(0), None) if self.points else None

    def tell(self, token: Any, run: dict) -> None:
        pass


class OptunaPoints:
    """Bayesian optimisation (Optuna's TPE): each new point learns from the trials finished before it."""

    def __init__(self, swept: list[Dimension], fixed: dict, trials: int | None, metric: str | None,
                 direction: str | None, seed: int):
        try:
            import optuna
        except ImportError:
            raise MlopsError("--search bayes needs Optuna: pip install 'jupyter-mlops[bayes]' (or pip install "
                             "optuna), or use a grid or --samples N") from None
        if not metric:
            raise MlopsError("--search bayes needs the metric to optimise: add --maximize METRIC or --minimize METRIC")
        if not trials or trials < 1:
            raise MlopsError("--search bayes needs the number of trials: --trials N (N >= 1)")
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.optuna = optuna
        self.study = optuna.create_study(direction=direction, sampler=optuna.samplers.TPESampler(seed=seed))
        self.distributions = {}
        for d in swept:
            if d.low is None:
                self.distributions[d.name] = CategoricalDistribution(list(d.values))
            elif d.integer:
                self.distributions[d.name] = IntDistribution(int(d.low), int(d.high), log=d.log)
            else:
                self.distributions[d.name] = FloatDistribution(d.low, d.high, log=d.log)
        self.fixed, self.total, self.metric, self.asked = fixed, trials, metric, 0
        self.adaptive = True  # each new point learns from every trial finished before it
        self._lock = threading.Lock()

    def ask(self) -> tuple[dict, Any] | None:
        with self._lock:
            if self.asked >= self.total:
                return None
            self.asked += 1
            trial = self.study.ask(self.distributions)
            return {**self.fixed, **trial.params}, trial

    def tell(self, token: Any, run: dict) -> None:
        value = run["metrics"].get(self.metric) if run["status"] == RunStatus.SUCCEEDED else None
        with self._lock:
            if value is None:
                self.study.tell(token, state=self.optuna.trial.TrialState.FAIL)
            else:
                self.study.tell(token, value)


@dataclass
class _Trial:
    run_id: str
    engine: Any
    paths: dict
    token: Any


def max_parallel() -> int:
    """The most trials' steps a sweep may run at once here: 4 kernels per CPU core, at least 8."""
    return max(8, 4 * (os.cpu_count() or 1))


@dataclass
class SweepPlan:
    """A sweep checked and ready: what any engine needs to run it."""
    pipeline: Any
    points: FixedPoints | OptunaPoints
    space: dict
    metric: str | None
    direction: str | None
    parallel: int
    search: str


def plan_sweep(notebook: str | os.PathLike, space: dict[str, Any], *, samples: int | None = None, seed: int = 0,
               search: str = "grid", trials: int | None = None, parallel: int = 2, maximize: str | None = None,
               minimize: str | None = None, max_trials: int = MAX_TRIALS) -> SweepPlan:
    """Check a sweep's arguments against the notebook without running anything (MlopsError naming the mistake);
    returns the plan an engine runs."""
    from .orchestration import validate
    from .search_space import parse_dimension

    if parallel < 1:
        raise MlopsError(f"--parallel must be at least 1, got {parallel}")
    if parallel > max_parallel():
        raise MlopsError(f"--parallel {parallel}: at most {max_parallel()} at once on this machine (4 kernels per "
                         "CPU core, at least 8; each is a Python process)")
    if max_trials < 1:
        raise MlopsError(f"--max-trials must be at least 1, got {max_trials}")
    if maximize and minimize:
        raise MlopsError("give either --maximize or --minimize, not both")
    if search not in ("grid", "random", "bayes"):
        raise MlopsError(f"unknown search `{search}`; use grid, random (with --samples N) or bayes (with --trials N)")
    pipeline = validate(notebook)
    dimensions = [parse_dimension(name, spec, pipeline.parameters, max_trials) for name, spec in space.items()]
    fixed = {d.name: d.values[0] for d in dimensions if not d.swept}
    swept = [d for d in dimensions if d.swept]
    if not swept:
        raise MlopsError("nothing to sweep: give at least one parameter several values, e.g. -p C 0.1,1,10")
    metric, direction = (maximize, "maximize") if maximize else (minimize, "minimize") if minimize else (None, None)
    known = pipeline.logged_metrics()
    if metric and known is not None and metric not in known:
        listed = ", ".join(sorted(known)) or "none (call jupyter_mlops.log_metrics in a step)"
        raise MlopsError(f"no step logs the metric `{metric}`; the notebook logs: {listed}")
    if search == "bayes":
        if trials is not None and trials > max_trials:
            raise MlopsError(f"--trials {trials:,}: a sweep runs at most {max_trials:,} trials (--max-trials "
                             "raises it)")
        points = OptunaPoints(swept, fixed, trials, metric, direction, seed)
    else:
        if search == "random" and samples is None:
            raise MlopsError("a random search needs --samples N")
        points = FixedPoints(swept, fixed, samples, seed, max_trials)
    return SweepPlan(pipeline, points, dict(space), metric, direction, parallel, search)


def run_sweep(ws, notebook, pipeline, points, space: dict, *, metric: str | None, direction: str | None,
              parallel: int, timeout: float | None, fresh_kernels: bool, on_trial: Callable | None,
              watch: Callable | None = None) -> SweepView:
    """Run the trials; `watch` is given each trial's step executor as it is made (to cancel the sweep: no new
    trial starts once one of them is cancelled)."""
    from .orchestration import describe_run, execute, step_executor, record_run
    from .engines.steps import kernel_pool
    from .workspace import new_run_id

    store = ws.store
    sweep_id = "sweep-" + new_run_id()
    shared = {s.name for s in pipeline.steps} - pipeline.reached_by(set(space))
    # kernels for the work that exists: 2 trials of a one-step notebook need 2 kernels, whatever --parallel says
    pool = kernel_pool(pipeline, min(parallel, (points.total or parallel) * len(pipeline.steps)), fresh_kernels)
    store.create_sweep(sweep_id, str(Path(notebook).resolve()), space, points.total, metric, direction)
    trials: list[_Trial] = []
    finished: dict[str, dict] = {}
    threads: list[threading.Thread] = []
    # trials in flight: each holds a step executor, its bundle, a store row shown `running` and threads, so never
    # every trial at once; fixed points run a few ahead to keep the kernels busy between trials, learned points
    # only as many as run at once
    room = threading.Semaphore(parallel if points.adaptive else min(points.total or 1, 2 * parallel))

    def new_trial(point: dict, token: Any) -> _Trial:
        run_id = new_run_id()
        engine = step_executor(ws, run_id, pipeline, point, parallel, timeout, fresh_kernels, None, pool=pool)
        trial = _Trial(run_id, engine, record_run(ws, run_id, notebook, pipeline, point, sweep_id=sweep_id), token)
        trials.append(trial)
        if watch:
            watch(engine)
        return trial

    def run_trial(trial: _Trial) -> None:
        try:
            result = execute(ws, trial.run_id, pipeline, trial.engine, trial.paths, reuse=shared)
            finished[trial.run_id] = result
            points.tell(trial.token, result)
            if on_trial:
                on_trial(result)
        finally:
            room.release()

    try:
        first = points.ask()
        owner = new_trial(*first)
        if shared:  # the first trial runs the shared steps; the others read its outputs
            owner.engine.execute(owner.paths, only=shared)
        broken = [n for n in shared if owner.engine.results[n].status != StepStatus.SUCCEEDED]
        next_point: tuple | None = first
        while next_point is not None:
            room.acquire()
            trial = owner if next_point is first else new_trial(*next_point)
            if trial is not owner:
                _share_steps(ws, owner.run_id, owner.engine, trial.run_id, shared)
            thread = threading.Thread(target=run_trial, args=(trial,), name=f"mlops-trial-{trial.run_id}",
                                      daemon=True)
            threads.append(thread)
            thread.start()
            next_point = None if broken or trial.engine.cancelled else points.ask()
        for t in threads:
            while t.is_alive():
                t.join(0.2)  # short joins keep Ctrl-C responsive
    except KeyboardInterrupt:
        for trial in trials:  # every trial stops; each records itself as cancelled
            trial.engine.cancel()
        for t in threads:
            t.join(30)
        for trial in trials:
            if store.get_run(trial.run_id)["status"] == RunStatus.RUNNING:  # interrupted before its trial began
                store.finish_run(trial.run_id, RunStatus.CANCELLED, "interrupted by the user")
        store.finish_sweep(sweep_id, RunStatus.CANCELLED, None)
        raise
    finally:
        pool.close()
    results = [finished.get(t.run_id) or describe_run(store.get_run(t.run_id)) for t in trials]
    best = best_trial(results, metric, direction)
    status = RunStatus.SUCCEEDED if any(r["status"] == RunStatus.SUCCEEDED for r in results) else RunStatus.FAILED
    if any(t.engine.cancelled for t in trials):
        status = RunStatus.CANCELLED
    store.finish_sweep(sweep_id, status, best["id"] if best else None)
    return {"id": sweep_id, "status": status, "metric": metric, "direction": direction,
            "shared_steps": sorted(shared), "best": best, "trials": results}


def _share_steps(ws, owner_id: str, owner, run_id: str, shared: set[str]) -> None:
    """Point a trial at the shared steps' outputs, notebooks and metrics."""
    from .artifacts import share_step

    store = ws.store
    for name in shared:
        result = owner.results[name]
        share_step(ws.artifacts(owner_id), ws.artifacts(run_id), name)
        store.update_step(run_id, name, status=StepStatus.REUSED, started=result.started, finished=result.finished,
                          duration=result.duration, output_notebook=result.output_notebook)
        store.record_metrics(run_id, name, result.metrics)


def best_trial(trials: list[dict], metric: str | None, direction: str | None) -> dict | None:
    scored = [t for t in trials if t["status"] == RunStatus.SUCCEEDED and metric in t["metrics"]]
    if not metric or not scored:
        return None
    pick = max if direction == "maximize" else min
    return pick(scored, key=lambda t: t["metrics"][metric])
