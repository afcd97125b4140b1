"""The Python API: everything the CLI (and later the magics and the panel) does is one of these functions."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from .errors import MlopsError, StepFailed
from .names import check_run_id
from .search_space import MAX_TRIALS
from .workspace import Workspace, new_run_id, process_owner


def validate(notebook: str | os.PathLike):
    """The notebook's pipeline; raises NotebookError listing every problem with its cell and a fix."""
    from .pipeline import build_pipeline

    return build_pipeline(notebook)


def _say_warnings(pipeline) -> None:
    """What validate warns about, said again when a run starts (the CLI and a notebook show it on stderr): a cell
    joining a step across a skip, pod hints a local run ignores, an empty step..."""
    import logging

    log = logging.getLogger("jupyter_mlops.run")
    for warning in pipeline.warnings:
        log.warning("warning: %s", warning)


def compile_notebook(notebook: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Write `out_dir/pipeline.yaml` and `out_dir/steps/NN-NAME.ipynb`; returns the pipeline.yaml path."""
    from .compile import compile_pipeline

    compile_pipeline(validate(notebook), out_dir)
    return Path(out_dir) / "pipeline.yaml"


def _effective_parameters(pipeline, overrides: dict[str, Any]) -> dict[str, Any]:
    values = {n: (p.default if p.type != "any" else p.source) for n, p in pipeline.parameters.items()}
    return {**values, **overrides}


def step_fingerprints(pipeline, code: dict[str, str], values: dict[str, Any]) -> dict[str, str]:
    """A step's result is reusable when its code, the parameter values it reads and its inputs are the same."""
    out: dict[str, str] = {}
    for step in pipeline.steps:
        read = sorted(set(step.parameters) | set(pipeline.setup_parameters))
        digest = hashlib.sha256(code[step.name].encode())
        digest.update(json.dumps({n: values.get(n) for n in read}, sort_keys=True, default=str).encode())
        for dep in sorted(step.depends_on):
            digest.update(out[dep].encode())
        out[step.name] = digest.hexdigest()
    return out


def _prepare(pipeline, run_dir: Path):
    """Compile the run's own bundle; returns the step notebook paths and their fingerprints of code."""
    import nbformat

    from .compile import code_fingerprint, compile_pipeline

    bundle = run_dir / "bundle"
    if bundle.exists():
        shutil.rmtree(bundle)
    paths = compile_pipeline(pipeline, bundle)
    code = {name: code_fingerprint(nbformat.read(str(p), as_version=4)) for name, p in paths.items()}
    return paths, code


def _engine(ws: Workspace, run_id: str, pipeline, overrides: dict, max_parallel: int | None,
            timeout: float | None, fresh_kernels: bool, on_update: Callable | None, pool=None):
    """The local engine for a run, reporting into the store; its kernels start warming up at once."""
    from .engines.local import LocalEngine

    store = ws.store

    def update(result) -> None:
        values = {"status": result.status, "started": result.started, "finished": result.finished,
                  "duration": result.duration, "output_notebook": result.output_notebook,
                  "error": result.error, "cell": result.cell}
        if result.status == "running":
            values["attempts"] = engine.attempts.get(result.name, 0) + 1
        if result.status != "reused":
            store.update_step(run_id, result.name, **{k: v for k, v in values.items() if v is not None or
                                                       k in ("error", "cell", "finished", "duration")})
        if result.metrics:
            store.record_metrics(run_id, result.name, result.metrics)
        if on_update:
            on_update(result)

    engine = LocalEngine(pipeline, ws.run_dir(run_id) / "steps", ws.artifacts(run_id), overrides,
                         max_parallel=max_parallel, timeout=timeout, fresh_kernels=fresh_kernels,
                         on_update=update, pool=pool)
    return engine


def _execute(ws: Workspace, run_id: str, pipeline, engine, paths, reuse: set[str],
             run_timeout: float | None = None) -> dict:
    import threading

    store = ws.store
    engine.attempts.update({s["name"]: s.get("attempts") or 0 for s in store.get_run(run_id)["steps"]})
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        engine.cancel()

    timer = threading.Timer(run_timeout, expire) if run_timeout else None
    if timer:
        timer.daemon = True
        timer.start()
    try:
        results = engine.execute(paths, reuse=reuse)
    except KeyboardInterrupt:
        store.finish_run(run_id, "cancelled", "interrupted by the user")
        raise
    finally:
        if timer:
            timer.cancel()
    if expired.is_set():
        store.finish_run(run_id, "failed", f"timed out after {run_timeout:g} s; steps still running were stopped")
        return describe_run(store.get_run(run_id))
    failed = [r for r in results.values() if r.status == "failed"]
    if failed:
        first = failed[0]
        where = f" (cell {first.cell} of {os.path.basename(pipeline.notebook)})" if first.cell else ""
        store.finish_run(run_id, "failed", f"step `{first.name}` failed{where}: {first.error}")
    elif any(r.status == "cancelled" for r in results.values()):
        store.finish_run(run_id, "cancelled", "cancelled")
    else:
        store.finish_run(run_id, "succeeded")
    return describe_run(store.get_run(run_id))


def run(notebook: str | os.PathLike, parameters: dict[str, Any] | None = None, *,
        workspace: str | os.PathLike | None = None, max_parallel: int | None = None, timeout: float | None = None,
        run_timeout: float | None = None, fresh_kernels: bool = False, on_update: Callable | None = None,
        check: bool = False, run_id: str | None = None, **run_fields: Any) -> dict:
    """Run a tagged notebook as a pipeline; returns the run (see `describe_run`). Bad tags or parameters raise
    before anything runs; a failed step gives a run with status `failed` (or raises StepFailed with check=True).
    `fresh_kernels=True` gives every step a never-used kernel instead of a wiped, warm one. `timeout` limits each
    cell, `run_timeout` the whole run (its steps are stopped and the run fails, saying so). `run_id` is for callers
    that hand the id out before the run is recorded (the server extension answers with it at once)."""
    from .engines.local import configure_pool, early_pool
    from .parameters import coerce_parameters

    if run_id is not None:
        check_run_id(run_id)  # it names the run's folder
    if not Path(notebook).is_file():
        validate(notebook)  # says what is wrong, before any kernel starts
    pool = early_pool(str(notebook), fresh_kernels)  # the first kernel starts while the notebook is analysed
    try:
        pipeline = validate(notebook)
        overrides = coerce_parameters(pipeline.parameters, dict(parameters or {}))
        _say_warnings(pipeline)
        configure_pool(pool, pipeline, max_parallel)
        ws = Workspace.locate(workspace, notebook)
        run_id = run_id or new_run_id()
        engine = _engine(ws, run_id, pipeline, overrides, max_parallel, timeout, fresh_kernels, on_update, pool)
        paths = _record_run(ws, run_id, notebook, pipeline, overrides, **run_fields)
        result = _execute(ws, run_id, pipeline, engine, paths, set(), run_timeout)
    finally:
        pool.close()
    if check and result["status"] != "succeeded":
        raise StepFailed(f"run {run_id} {result['status']}: {result['error']}")
    return result


def _cluster_target(image: str | None, namespace: str, artifacts_secret: str | None, store_secret: str | None,
                    cpu: str, memory: str):
    from .kube.manifests import Target

    if not image:
        raise MlopsError("--backend kubernetes needs --image: build one with `jupyter-mlops build NOTEBOOK --tag "
                         "REGISTRY/NAME:TAG` and push it where the cluster pulls from")
    return Target(image, namespace, cpu, memory, workspace_claim=None, artifacts_secret=artifacts_secret,
                  store_secret=store_secret)


def run_kubernetes(notebook: str | os.PathLike, parameters: dict[str, Any] | None = None, *, image: str,
                   namespace: str = "default", artifacts_secret: str | None = None, store_secret: str | None = None,
                   cpu: str = "1", memory: str = "2Gi", workspace: str | os.PathLike | None = None, api_client=None,
                   on_log: Callable | None = None, engine_hook: Callable | None = None, **run_fields: Any) -> dict:
    """Run the notebook as a Job on the cluster of the kubeconfig (see engines/kubernetes.py), in `image` (made by
    `jupyter-mlops build`); the run is recorded in this workspace's store like a local one. `engine_hook` gets the
    engine before it starts (to cancel it from another thread)."""
    from .engines.kubernetes import KubernetesEngine
    from .parameters import coerce_parameters

    pipeline = validate(notebook)
    overrides = coerce_parameters(pipeline.parameters, dict(parameters or {}))
    ws = Workspace.locate(workspace, notebook)
    target = _cluster_target(image, namespace, artifacts_secret, store_secret, cpu, memory)
    engine = KubernetesEngine(ws, target, api_client=api_client, on_log=on_log)
    if engine_hook:
        engine_hook(engine)
    return engine.run(notebook, pipeline, overrides, new_run_id(), **run_fields)


def sweep_kubernetes(notebook: str | os.PathLike, space: dict[str, Any], *, image: str | None,
                     samples: int | None = None, seed: int = 0, search: str = "grid", trials: int | None = None,
                     parallel: int = 2, maximize: str | None = None, minimize: str | None = None,
                     max_trials: int = MAX_TRIALS, namespace: str = "default", artifacts_secret: str | None = None,
                     store_secret: str | None = None, cpu: str = "1", memory: str = "2Gi",
                     workspace: str | os.PathLike | None = None, api_client=None,
                     engine_hook: Callable | None = None) -> dict:
    """A sweep on the cluster: one Indexed Job, pod i running trial i, `parallel` at once; each trial a run in
    this store under the sweep id, like a local sweep's (grid or random points; Bayesian search stays local, as it
    needs each result before choosing the next point)."""
    from .engines.kubernetes import KubernetesEngine

    if search == "bayes":
        raise MlopsError("--search bayes picks each point from the results before it: run it locally (or use a "
                         "grid or --samples N on the cluster)")
    pipeline, points, metric, direction = plan_sweep(notebook, space, samples=samples, seed=seed, search=search,
                                                     trials=trials, parallel=parallel, maximize=maximize,
                                                     minimize=minimize, max_trials=max_trials)
    ws = Workspace.locate(workspace, notebook)
    engine = KubernetesEngine(ws, _cluster_target(image, namespace, artifacts_secret, store_secret, cpu, memory),
                              api_client=api_client)
    if engine_hook:
        engine_hook(engine)
    return engine.sweep(notebook, pipeline, points.points, dict(space), metric, direction, parallel)


def deploy_kubernetes(name: str, *, image: str | None, canary: int | None = None, weight: float = 10.0,
                      shadow: int | None = None, gateway: str = "mlops-gateway", sticky_header: str | None = None,
                      namespace: str = "default", artifacts_secret: str | None = None,
                      store_secret: str | None = None, cpu: str = "1", memory: str = "2Gi",
                      workspace: str | os.PathLike | None = None, api_client=None) -> list[str]:
    """Serve model `name` on the cluster: a Deployment and Service per variant and an HTTPRoute with the canary's
    weight and a mirror to the shadow, created or updated. The servers read the team's registry, so the store and
    the model packages must be shared (`store_secret`, and an object-store MLOPS_ARTIFACTS_URL at registration)."""
    from .engines.kubernetes import load_client
    from .kube.apply import apply
    from .kube.manifests import serving
    from .registry import resolve

    if sticky_header:
        raise MlopsError("--sticky-header cannot be expressed by a standard Gateway API HTTPRoute; deploy without it "
                         "on Kubernetes (or route by header in your gateway's own configuration)")
    target = _cluster_target(image, namespace, artifacts_secret, store_secret, cpu, memory)
    target.check()
    if not store_secret:
        raise MlopsError("the cluster's model servers read the registry: give --store-secret, a Secret whose key "
                         "`url` is the team store (MLOPS_STORE_URL) that holds this model")
    store = Workspace.locate(workspace).store
    aliases = {a["alias"]: a["version"] for a in store.aliases(name)}
    primary = resolve(store, f"{name}@production" if "production" in aliases else name)
    if "://" not in primary["package"]:
        raise MlopsError(f"{name} version {primary['version']} is packaged on this machine ({primary['package']}); "
                         "register it with MLOPS_ARTIFACTS_URL set to object storage so the cluster can fetch it")
    for version in (canary, shadow):
        if version is not None:
            resolve(store, f"{name}:{version}")
    objects = serving(target, name, primary["version"], canary, weight, shadow, gateway)
    return apply(api_client or load_client(), objects)


def schedule_kubernetes(notebook: str | os.PathLike, name: str, cron: str, parameters: dict[str, Any] | None = None,
                        *, image: str | None, timezone: str = "UTC", namespace: str = "default",
                        artifacts_secret: str | None = None, store_secret: str | None = None, cpu: str = "1",
                        memory: str = "2Gi", workspace: str | os.PathLike | None = None, api_client=None) -> list[str]:
    """The schedule as a CronJob on the cluster (the cluster's controller fires it; overlapping runs forbidden)."""
    from .engines.kubernetes import load_client
    from .kube.apply import apply
    from .kube.manifests import cron_job, pod_hints, resource_name
    from .parameters import coerce_parameters
    from .names import check_name
    from .schedule import check_cron, timezone_of

    check_name(name, "schedule name")
    check_cron(cron)
    timezone_of(timezone)
    pipeline = validate(notebook)
    values = coerce_parameters(pipeline.parameters, dict(parameters or {}))
    target = _cluster_target(image, namespace, artifacts_secret, store_secret, cpu, memory)
    target.artifacts_url = Workspace.locate(workspace, notebook).artifacts_url or None
    target.check()
    job = cron_job(target, resource_name(name), Path(notebook).name, values, cron, timezone, pod_hints(pipeline))
    return apply(api_client or load_client(), [job])


def _record_run(ws: Workspace, run_id: str, notebook, pipeline, overrides: dict, **run_fields: Any) -> dict:
    """Compile the run's bundle and record the run with its pending steps; returns the step notebooks."""
    store = ws.store  # opened before the run's folder exists: a new store is never made beside run folders
    run_dir = ws.run_dir(run_id)
    paths, code = _prepare(pipeline, run_dir)
    values = _effective_parameters(pipeline, overrides)
    fingerprints = step_fingerprints(pipeline, code, values)
    steps = [{"name": s.name, "position": i, "kind": s.kind, "fingerprint": fingerprints[s.name]}
             for i, s in enumerate(pipeline.steps)]
    run_fields.setdefault("owner", process_owner())
    store.create_run(run_id, str(Path(notebook).resolve()), pipeline.notebook_hash, values, str(run_dir),
                     steps, **run_fields)
    _write_run_file(run_dir, overrides)
    return paths


def _write_run_file(run_dir: Path, overrides: dict) -> None:
    """The parameters given on the command line, beside the bundle: what `resume` passes again."""
    from .files import write_atomic

    write_atomic(run_dir / "run.json", json.dumps({"parameters": overrides}, indent=1, default=str))


def resume(run_id: str, *, workspace: str | os.PathLike | None = None, max_parallel: int | None = None,
           timeout: float | None = None, fresh_kernels: bool = False, on_update: Callable | None = None) -> dict:
    """Rerun a failed or cancelled run from its failed steps, reusing every upstream step whose code, parameters
    and inputs are unchanged. The notebook is read again, so a fix made since the failure is picked up."""
    from .artifacts import read_manifest
    from .parameters import coerce_parameters

    ws = Workspace.locate(workspace)
    record = ws.store.get_run(run_id)
    run_id = record["id"]
    if record["status"] == "succeeded":
        raise MlopsError(f"run {run_id} succeeded: nothing to resume; start a new one with `jupyter-mlops run`")
    if record["status"] == "running":
        raise MlopsError(f"run {run_id} is still running; wait for it, or interrupt it first")
    if not Path(record["notebook"]).is_file():
        raise MlopsError(f"run {run_id}'s notebook {record['notebook']} no longer exists; put it back to resume")
    pipeline = validate(record["notebook"])
    run_dir = Path(record["run_dir"])
    given = json.loads((run_dir / "run.json").read_text())["parameters"] if (run_dir / "run.json").exists() else {}
    overrides = coerce_parameters(pipeline.parameters, given)
    paths, code = _prepare(pipeline, run_dir)
    fingerprints = step_fingerprints(pipeline, code, _effective_parameters(pipeline, overrides))

    before = {s["name"]: s for s in record["steps"]}
    reuse: set[str] = set()
    for step in pipeline.steps:
        old = before.get(step.name)
        if (old and old["status"] in ("succeeded", "reused") and old["fingerprint"] == fingerprints[step.name]
                and all(d in reuse for d in step.depends_on)):
            try:
                if step.outputs:
                    read_manifest(ws.artifacts(run_id), step.name)
                reuse.add(step.name)
            except Exception:
                pass
    rows, superseded = [], []
    for i, step in enumerate(pipeline.steps):
        old = before.get(step.name, {})
        kept = step.name in reuse
        rows.append({"name": step.name, "position": i, "kind": step.kind, "fingerprint": fingerprints[step.name],
                     "status": "reused" if kept else "pending", "attempts": old.get("attempts") or 0,
                     **{k: old.get(k) if kept else None for k in ("started", "finished", "duration",
                                                                  "output_notebook")}})
        if not kept and old.get("output_notebook") and Path(old["output_notebook"]).exists():
            superseded.append((Path(old["output_notebook"]), old.get("attempts") or 1))
    ws.store.replace_steps(run_id, rows)
    for path, attempt in superseded:  # keep the earlier attempt's notebook beside the new one
        path.rename(path.with_suffix(f".attempt{attempt}.ipynb"))
    ws.store.update_run(run_id, status="running", notebook_hash=pipeline.notebook_hash, error=None,
                        finished=None, duration=None, owner=process_owner())
    engine = _engine(ws, run_id, pipeline, overrides, max_parallel, timeout, fresh_kernels, on_update)
    try:
        return _execute(ws, run_id, pipeline, engine, paths, reuse)
    finally:
        engine.close()


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds") if ts else None


def describe_run(record: dict) -> dict:
    """A run as JSON-ready data: id, status, params, metrics, started, duration, steps, ..."""
    steps = [{"name": s["name"], "kind": s["kind"], "status": s["status"], "started": _iso(s["started"]),
              "duration": s["duration"], "output_notebook": s["output_notebook"], "error": s["error"],
              "cell": s["cell"], "attempts": s["attempts"]} for s in record["steps"]]
    return {"id": record["id"], "notebook": record["notebook"], "notebook_hash": record["notebook_hash"],
            "status": record["status"], "params": record["params"], "metrics": record["metrics"],
            "started": _iso(record["started"]), "finished": _iso(record["finished"]),
            "duration": record["duration"], "error": record["error"], "run_dir": record["run_dir"],
            "sweep_id": record["sweep_id"], "schedule": record["schedule"],
            "scheduled_for": record["scheduled_for"], "steps": steps}


def list_runs(*, workspace: str | os.PathLike | None = None, limit: int | None = None,
              sweep_id: str | None = None) -> list[dict]:
    return [describe_run(r) for r in Workspace.locate(workspace).store.list_runs(limit=limit, sweep_id=sweep_id)]


def get_run(run_id: str, *, workspace: str | os.PathLike | None = None) -> dict:
    return describe_run(Workspace.locate(workspace).store.get_run(run_id))


def compare(run_ids: list[str], *, workspace: str | os.PathLike | None = None, all_rows: bool = False):
    """Runs side by side (one column each): status, duration, notebook version, then `params.NAME` and
    `metrics.NAME` rows; only the rows where they differ unless `all_rows`."""
    import pandas as pd

    if len(run_ids) < 2:
        raise MlopsError("compare needs at least two runs, e.g. `jupyter-mlops compare RUN1 RUN2`")
    found = [get_run(r, workspace=workspace) for r in run_ids]
    rows: dict[str, list] = {"status": [r["status"] for r in found], "duration": [r["duration"] for r in found],
                             "notebook_hash": [r["notebook_hash"][:12] for r in found]}
    for kind in ("params", "metrics"):
        for name in dict.fromkeys(k for r in found for k in r[kind]):
            rows[f"{kind}.{name}"] = [r[kind].get(name) for r in found]
    table = pd.DataFrame.from_dict(rows, orient="index", columns=[r["id"] for r in found])
    if not all_rows:
        differ = [name for name, values in rows.items() if name != "duration" and
                  len({json.dumps(v, sort_keys=True, default=str) for v in values}) > 1]
        table = table.loc[differ]
    return table


def runs(*, workspace: str | os.PathLike | None = None, limit: int | None = None, sweep_id: str | None = None):
    """A pandas DataFrame, one row per run, newest first: run, notebook, status, started, duration, then one
    `params.NAME` column per parameter and one `metrics.NAME` column per metric (MLflow's naming)."""
    import pandas as pd

    rows = []
    for r in list_runs(workspace=workspace, limit=limit, sweep_id=sweep_id):
        row = {"run": r["id"], "notebook": os.path.basename(r["notebook"]), "status": r["status"],
               "started": pd.Timestamp(r["started"]) if r["started"] else pd.NaT, "duration": r["duration"]}
        row.update({f"params.{k}": v for k, v in r["params"].items()})
        row.update({f"metrics.{k}": v for k, v in r["metrics"].items()})
        rows.append(row)
    return pd.DataFrame(rows, columns=None if rows else ["run", "notebook", "status", "started", "duration"])


def planned_trials(notebook: str | os.PathLike, space: dict[str, Any], *, samples: int | None = None,
                   seed: int = 0, search: str = "grid", trials: int | None = None,
                   max_trials: int = MAX_TRIALS) -> int:
    """How many trials `sweep` will run with these arguments (for progress displays), counted without making
    them."""
    from .search_space import count_points, parse_dimension

    if search == "bayes":
        return trials or 0
    declared = validate(notebook).parameters
    swept = [d for d in (parse_dimension(n, v, declared, max_trials) for n, v in space.items()) if d.swept]
    return count_points(swept, samples, max_trials) if swept else 0


def sweep(notebook: str | os.PathLike, space: dict[str, Any], *, samples: int | None = None, seed: int = 0,
          search: str = "grid", trials: int | None = None, parallel: int = 2, maximize: str | None = None,
          minimize: str | None = None, workspace: str | os.PathLike | None = None, timeout: float | None = None,
          fresh_kernels: bool = False, on_trial: Callable | None = None, max_trials: int = MAX_TRIALS) -> dict:
    """Run the notebook once per point of `space` ({parameter: list, range spec or single value}; see
    search_space.py): every combination (`search="grid"`), `samples` random points, or `trials` points chosen by
    Optuna (`search="bayes"`). Steps run `parallel` at a time on shared warm kernels; steps that no swept parameter
    reaches run once, for all trials. Each trial is a run grouped under the sweep id; returns
    {id, status, metric, direction, shared_steps, best, trials}."""
    from .trials import run_sweep

    pipeline, points, metric, direction = plan_sweep(notebook, space, samples=samples, seed=seed, search=search,
                                                     trials=trials, parallel=parallel, maximize=maximize,
                                                     minimize=minimize, max_trials=max_trials)
    _say_warnings(pipeline)
    ws = Workspace.locate(workspace, notebook)
    return run_sweep(ws, notebook, pipeline, points, dict(space), metric=metric, direction=direction,
                     parallel=parallel, timeout=timeout, fresh_kernels=fresh_kernels, on_trial=on_trial)


def plan_sweep(notebook: str | os.PathLike, space: dict[str, Any], *, samples: int | None = None, seed: int = 0,
               search: str = "grid", trials: int | None = None, parallel: int = 2, maximize: str | None = None,
               minimize: str | None = None, max_trials: int = MAX_TRIALS):
    """Check a sweep's arguments against the notebook without running anything (MlopsError naming the mistake);
    returns (pipeline, points, metric, direction)."""
    from .search_space import parse_dimension
    from .trials import FixedPoints, OptunaPoints, max_parallel

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
    return pipeline, points, metric, direction


# -- the model registry -------------------------------------------------------------------------------------------
def register(run: str, name: str, *, metric: str | None = None, maximize: bool = True,
             require: list[str] | None = None, sweep_id: str | None = None,
             workspace: str | os.PathLike | None = None) -> dict:
    """Register a run's model (`run` is a run id, or "best": the succeeded run with the best `metric`, within
    `sweep_id` if given) as the next version of `name`, if it passes every `require` gate ("accuracy>=0.9").
    Raises GateFailed, registering nothing, when a gate fails."""
    from .names import check_name
    from .registry import parse_gate
    from .registry import register as register_version

    check_name(name)
    for gate in require or []:
        parse_gate(gate)  # a malformed gate is an error before anything else
    ws = Workspace.locate(workspace)
    if run == "best":
        if not metric:
            raise MlopsError("`best` needs the metric that ranks runs: --metric accuracy (with --maximize or "
                             "--minimize)")
        candidates = [r for r in list_runs(workspace=ws.root, sweep_id=sweep_id)
                      if r["status"] == "succeeded" and metric in r["metrics"]]
        if not candidates:
            raise MlopsError(f"no succeeded run logged `{metric}`" + (f" in sweep {sweep_id}" if sweep_id else ""))
        chosen = (max if maximize else min)(candidates, key=lambda r: r["metrics"][metric])
    else:
        chosen = get_run(run, workspace=ws.root)
    return register_version(ws, chosen, name, list(require or []))


def models(*, workspace: str | os.PathLike | None = None) -> list[dict]:
    """Every registered model: its versions (with run, metrics, created) and its aliases."""
    store = Workspace.locate(workspace).store
    out: dict[str, dict] = {}
    for v in store.model_versions():
        entry = out.setdefault(v["name"], {"name": v["name"], "versions": [], "aliases": {}})
        entry["versions"].append({"version": v["version"], "run_id": v["run_id"], "metrics": v["metrics"],
                                  "params": v["params"], "created": _iso(v["created"]), "package": v["package"],
                                  "data_fingerprint": v["data_fingerprint"], "notebook_hash": v["notebook_hash"]})
    for a in store.aliases():
        if a["name"] in out:
            out[a["name"]]["aliases"][a["alias"]] = a["version"]
    return list(out.values())


def promote(name: str, version: int, *, alias: str = "production",
            workspace: str | os.PathLike | None = None) -> dict:
    """Point `alias` (production, staging, any name) at a version; the change is kept in the alias history."""
    from .names import check_name
    from .registry import resolve

    check_name(alias, "alias")
    store = Workspace.locate(workspace).store
    resolve(store, f"{check_name(name)}:{int(version)}")  # the version must exist
    previous = store.set_alias(name, alias, int(version), "promote")
    return {"name": name, "alias": alias, "version": int(version), "previous": previous}


def rollback(name: str, *, alias: str = "production", workspace: str | os.PathLike | None = None) -> dict:
    """Point `alias` back at the version it held before the current one."""
    from .names import check_name

    check_name(name)
    check_name(alias, "alias")
    store = Workspace.locate(workspace).store
    current = next((a["version"] for a in store.aliases(name) if a["alias"] == alias), None)
    if current is None:
        raise MlopsError(f"model `{name}` has no alias `{alias}` to roll back")
    # walk the history back: the version held before `current` was set the last time
    history = store.alias_history(name, alias)
    last_set = max(i for i, h in enumerate(history) if h["version"] == current)
    previous = history[last_set]["previous"]
    if previous is None:
        raise MlopsError(f"`{name}@{alias}` has had no other version before {current}; nothing to roll back to")
    store.set_alias(name, alias, previous, "rollback")
    return {"name": name, "alias": alias, "version": previous, "previous": current}


def alias_history(name: str, *, workspace: str | os.PathLike | None = None) -> list[dict]:
    return [{**h, "at": _iso(h["at"])} for h in Workspace.locate(workspace).store.alias_history(name)]
