"""The Python API: everything the CLI (and later the magics and the panel) does is one of these functions."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from .errors import MlopsError
# the run verbs live with the rest of a run's life (runs.py); the API offers them as they are
from .orchestration import describe_run, iso, resume, run, say_warnings, validate  # noqa: F401
from .search_space import MAX_TRIALS
from .workspace import Workspace, new_run_id


def compile_notebook(notebook: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Write `out_dir/pipeline.yaml` and `out_dir/steps/NN-NAME.ipynb`; returns the pipeline.yaml path."""
    from .compile import compile_pipeline

    compile_pipeline(validate(notebook), out_dir)
    return Path(out_dir) / "pipeline.yaml"


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
    from .registry import primary_version, resolve

    if sticky_header:
        raise MlopsError("--sticky-header cannot be expressed by a standard Gateway API HTTPRoute; deploy without it "
                         "on Kubernetes (or route by header in your gateway's own configuration)")
    target = _cluster_target(image, namespace, artifacts_secret, store_secret, cpu, memory)
    target.check()
    if not store_secret:
        raise MlopsError("the cluster's model servers read the registry: give --store-secret, a Secret whose key "
                         "`url` is the team store (MLOPS_STORE_URL) that holds this model")
    store = Workspace.locate(workspace).store
    primary = primary_version(store, name)
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
    say_warnings(pipeline)
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
def register(run: str, name: str, *, metric: str | None = None, maximize: bool = True,  # noqa: F811 - `run` the id
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
                                  "params": v["params"], "created": iso(v["created"]), "package": v["package"],
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


def monitor(name: str, *, window: int = 1000, workspace: str | os.PathLike | None = None) -> dict:
    """Drift, outliers and latency of the latest `window` logged requests of model `name`, against the training
    data of the version it serves; plus `version`, and the running deployment's shadow comparison (or None)."""
    from .registry import fetch_package, primary_version
    from .serving.monitor import report
    from .serving.server import shadow_report

    ws = Workspace.locate(workspace)
    version = primary_version(ws.store, name)
    found = report(fetch_package(ws, version), ws.root / "logs" / name, window)
    return {**found, "version": version["version"], "shadow": shadow_report(ws.store.get_deployment(name))}


def deployments(*, workspace: str | os.PathLike | None = None, window: int = 500) -> list[dict]:
    """Each deployment with its spec, whether its server is up, and its monitor summary (or `monitor_error`)."""
    from .serving.server import is_up

    ws = Workspace.locate(workspace)
    out = []
    for row in ws.store.deployments():
        entry = {"name": row["name"], "url": row["url"], "spec": row["spec"], "up": is_up(row),
                 "updated": row["updated"]}
        try:
            found = monitor(row["name"], window=window, workspace=ws.root)
            entry.update(version=found["version"], requests=found["requests"], outliers=found["outliers"],
                         drifted_features=found["drifted_features"])
        except (MlopsError, OSError, ValueError, KeyError) as exc:
            entry["monitor_error"] = str(exc)
        out.append(entry)
    return out


# -- schedules ----------------------------------------------------------------------------------------------------
def add_schedule(notebook: str | os.PathLike, name: str, cron: str, parameters: dict[str, Any] | None = None, *,
                 timezone: str = "UTC", missed: str = "skip", retries: int = 0, backoff: float = 60.0,
                 timeout: float | None = None, workspace: str | os.PathLike | None = None) -> dict:
    """Schedule the notebook (every argument checked first: cron, timezone, tags, parameters); returns it as
    `schedules` lists it."""
    from .schedule import add

    return add(Workspace.locate(workspace, notebook), notebook, name, cron, parameters, timezone=timezone,
               missed=missed, retries=retries, backoff=backoff, timeout=timeout)


def schedules(*, workspace: str | os.PathLike | None = None) -> list[dict]:
    """Every schedule with its next fire time, in its own timezone."""
    import time

    from .schedule import describe

    return [describe(row, time.time()) for row in Workspace.locate(workspace).store.schedules()]


def set_schedule(name: str, action: str, *, workspace: str | os.PathLike | None = None) -> dict:
    """`pause`, `resume` or `delete` a schedule (its runs stay in the store)."""
    store = Workspace.locate(workspace).store
    store.get_schedule(name)  # an unknown name: an error naming it
    if action == "delete":
        store.delete_schedule(name)
        return {"name": name, "status": "deleted"}
    if action not in ("pause", "resume"):
        raise MlopsError(f"a schedule can be paused, resumed or deleted, not `{action}`")
    store.set_schedule_status(name, "paused" if action == "pause" else "active")
    return {"name": name, "status": "paused" if action == "pause" else "active"}


def fire_schedule(name: str, *, workspace: str | os.PathLike | None = None) -> dict:
    """Run a schedule once, now, outside its cron; waits for the run and returns its tick."""
    from .schedule import Scheduler

    return Scheduler(Workspace.locate(workspace)).fire_now(name)


def schedule_history(name: str, *, workspace: str | os.PathLike | None = None) -> list[dict]:
    """A schedule's fired ticks, their times in the schedule's timezone."""
    from .schedule import iso

    store = Workspace.locate(workspace).store
    zone = store.get_schedule(name)["timezone"]
    return [{**t, "tick": iso(t["tick"], zone), "claimed_at": iso(t["claimed_at"], zone)}
            for t in store.tick_history(name)]


def alias_history(name: str, *, workspace: str | os.PathLike | None = None) -> list[dict]:
    return [{**h, "at": iso(h["at"])} for h in Workspace.locate(workspace).store.alias_history(name)]
