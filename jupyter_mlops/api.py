"""The Python API: everything the CLI (and later the magics and the panel) does is one of these functions."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import MlopsError, StepFailed
# the run verbs live with the rest of a run's life (orchestration.py); the API offers them as they are
from .orchestration import check_resumable, describe_run, iso, resume, say_warnings, validate  # noqa: F401
from .trials import plan_sweep  # noqa: F401 - the panel checks a sweep with it before starting one
from .records import EngineAnswer, RunView, SweepView
from .search_space import MAX_TRIALS
from .workspace import Workspace


def compile_notebook(notebook: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Write `out_dir/pipeline.yaml` and `out_dir/steps/NN-NAME.ipynb`; returns the pipeline.yaml path."""
    from .compile import compile_pipeline

    compile_pipeline(validate(notebook), out_dir)
    return Path(out_dir) / "pipeline.yaml"


def list_engines() -> list[dict]:
    """The engines registered here (`jupyter_mlops.engines` entry points): name, summary, verbs and settings."""
    from . import engines as registry

    return [cls.describe() for cls in registry.registered().values()]


def _engine(backend: str, verb: str, workspace, keywords: dict[str, Any], engine_hook: Callable | None):
    """The engine object for one call and the keywords left for its verb; `engine_hook` gets it first (to cancel
    it from another thread)."""
    from . import engines as registry

    settings, rest = registry.split(backend, verb, keywords)
    engine = registry.create(backend, verb, workspace, settings)
    if engine_hook:
        engine_hook(engine)
    return engine, rest


def run(notebook: str | os.PathLike, parameters: dict[str, Any] | None = None, *, backend: str = "local",
        workspace: str | os.PathLike | None = None, run_id: str | None = None, on_update: Callable | None = None,
        on_log: Callable | None = None, check: bool = False, engine_hook: Callable | None = None,
        **options: Any) -> RunView:
    """Run a tagged notebook as a pipeline on engine `backend` (`list_engines()` names them) and record it; returns the
    run (see `describe_run`). Bad tags or parameters raise before anything runs; a failed step gives a run with
    status `failed` (or raises StepFailed with check=True). `options` are the engine's: on `local`, max_parallel,
    timeout (per cell), run_timeout (the whole run), fresh_kernels; on `kubernetes`, image, namespace, ..."""
    from . import engines as registry

    engine, rest = _engine(backend, "run", workspace, options, engine_hook)
    result = registry.call(engine, "run", notebook, parameters, run_id=run_id, on_update=on_update, on_log=on_log,
                           **rest)
    if check and result["status"] != "succeeded":
        raise StepFailed(f"run {result['id']} {result['status']}: {result['error']}")
    return result


def deploy(name: str, *, canary: int | None = None, weight: float = 10.0, shadow: int | None = None,
           sticky_header: str | None = None, progressive: bool = False, steps: str | list | None = None,
           interval: str | float | None = None, min_requests: int | None = None,
           max_error_increase: float | None = None, max_p99_ratio: float | None = None, backend: str = "local",
           workspace: str | os.PathLike | None = None, engine_hook: Callable | None = None,
           **options: Any) -> EngineAnswer:
    """Serve model `name`'s production version (else its latest) with an optional canary version taking `weight`
    percent of requests and a shadow version mirrored; an existing deployment is updated in place. Returns
    {name, status, url, lines}; on `local` without `wait=True`, also `server` (a server on a thread of this
    process: `.stop()` ends it). `options` are the engine's (local: host, port, limits, log_limits, wait).

    `progressive`: the canary starts at the first of `steps` (default 10,25,50,100) and the scheduler's controller
    (rollout.py) raises it each `interval` while it is as healthy as the primary, promoting it at 100 and rolling
    it back to 0 otherwise; `deploy_history` tells each decision."""
    from . import engines as registry
    from . import rollout
    from .names import check_name

    check_name(name)
    tuning = dict(steps=steps, interval=interval, min_requests=min_requests, max_error_increase=max_error_increase,
                  max_p99_ratio=max_p99_ratio)
    if not progressive and any(v is not None for v in tuning.values()):
        given = next(k for k, v in tuning.items() if v is not None)
        raise MlopsError(f"--{given.replace('_', '-')} is a setting of a progressive rollout: add --progressive")
    engine, rest = _engine(backend, "deploy", workspace, options, engine_hook)
    store = Workspace.locate(workspace).store
    planned = rollout.plan(store, name, canary, **tuning) if progressive else None
    if planned is None:
        from .registry import resolve

        for version in (canary, shadow):  # a deploy refused for a wrong version leaves a running rollout alone
            if version is not None:
                resolve(store, f"{name}:{version}")
        rollout.stop(store, name, "replaced by a deploy without --progressive")
        return registry.call(engine, "deploy", name, canary=canary, weight=weight, shadow=shadow,
                             sticky_header=sticky_header, **rest)
    return registry.call(engine, "deploy", name, canary=canary, weight=planned["steps"][0], shadow=shadow,
                         sticky_header=sticky_header, rollout=planned, **rest)


def _latest_rollout(store, name: str) -> dict | None:
    """The deployment's latest progressive rollout with its decisions; a warning when it runs but nothing
    advances it."""
    from .owners import alive
    from .rollout import NO_CONTROLLER, history

    found = history(store, name, limit=1)
    if not found:
        return None
    latest = found[0]
    if latest["status"] == "running" and not latest["settings"].get("kubernetes") and not alive(store, "scheduler"):
        latest["warning"] = NO_CONTROLLER
    return latest


def deploy_history(name: str, *, workspace: str | os.PathLike | None = None, limit: int = 20) -> list[dict]:
    """The deployment's progressive rollouts, newest first: canary, steps, status, the weight now, and each
    decision with its reason and the figures it judged."""
    from . import rollout
    from .names import check_name

    return rollout.history(Workspace.locate(workspace).store, check_name(name), limit)


def undeploy(name: str, *, backend: str = "local", workspace: str | os.PathLike | None = None,
             **options: Any) -> EngineAnswer:
    """Stop serving model `name` and forget its deployment (its request logs stay): on `local` its server process
    ends cleanly; on `kubernetes` its HTTPRoute, Deployments and Services are deleted (`namespace=`)."""
    from . import engines as registry
    from .names import check_name

    from . import rollout

    engine, rest = _engine(backend, "undeploy", workspace, options, None)
    answer = registry.call(engine, "undeploy", check_name(name), **rest)
    rollout.stop(Workspace.locate(workspace).store, name, "the deployment was stopped (undeploy)")
    return answer


def list_runs(*, workspace: str | os.PathLike | None = None, limit: int | None = None,
              sweep_id: str | None = None, steps: bool = True) -> list[RunView]:
    """Runs newest first (each with its steps unless `steps=False`)."""
    store = Workspace.locate(workspace).store
    return [describe_run(r) for r in store.list_runs(limit=limit, sweep_id=sweep_id, steps=steps)]


def iter_runs(*, workspace: str | os.PathLike | None = None, sweep_id: str | None = None,
              steps: bool = True) -> Iterator[RunView]:
    """Every run, newest first, read a page at a time: the first arrives at once, however many there are."""
    for record in Workspace.locate(workspace).store.iter_runs(sweep_id=sweep_id, steps=steps):
        yield describe_run(record)


MAX_PAGE = 1000


def run_page(*, workspace: str | os.PathLike | None = None, filter: str = "", sort: str = "started",  # noqa: A002
             descending: bool = True, offset: int = 0, limit: int = 100, sweep_id: str | None = None,
             notebook: str | os.PathLike | None = None) -> dict:
    """One page of the runs `filter` keeps (`accuracy>0.9 status=failed C=10 digits`: see run_query.py), sorted by
    `sort` (a field, `params.NAME` or `metrics.NAME`), each without its steps but with `steps_total` and
    `steps_done`; with `total` (runs kept) and `running` (runs running in the workspace); only the runs of
    `notebook` when given. The store filters, sorts and pages, so a page costs the same at 100 runs or 100,000."""
    if not 1 <= limit <= MAX_PAGE:
        raise MlopsError(f"a page holds 1 to {MAX_PAGE} runs, not {limit}")
    if offset < 0:
        raise MlopsError(f"the offset of a page is 0 or more, not {offset}")
    store = Workspace.locate(workspace).store
    rows, total, running = store.run_page(filter, sort, descending, offset, limit, sweep_id,
                                          str(Path(notebook).resolve()) if notebook else None)
    runs = []
    for record in rows:
        view: dict = dict(describe_run(record))
        del view["steps"]
        view.update(steps_total=record["steps_total"], steps_done=record["steps_done"])
        runs.append(view)
    return {"runs": runs, "total": total, "running": running, "filter": filter, "sort": sort,
            "descending": descending, "offset": offset, "limit": limit}


def get_run(run_id: str, *, workspace: str | os.PathLike | None = None) -> dict:
    return describe_run(Workspace.locate(workspace).store.get_run(run_id))


def compare(run_ids: list[str], *, workspace: str | os.PathLike | None = None, all_rows: bool = False):
    """Runs side by side (one column each): status, duration, notebook version, then `params.NAME`,
    `metrics.NAME` and `data.PATH` rows (the content digest of what each run read, `-` where it did not read it;
    PATH from the first run's notebook folder when inside it);
    only the rows where they differ unless `all_rows`."""
    import pandas as pd

    if len(run_ids) < 2:
        raise MlopsError("compare needs at least two runs, e.g. `jupyter-mlops compare RUN1 RUN2`")
    found = [get_run(r, workspace=workspace) for r in run_ids]
    rows: dict[str, list] = {"status": [r["status"] for r in found], "duration": [r["duration"] for r in found],
                             "notebook_hash": [r["notebook_hash"][:12] for r in found]}
    for kind in ("params", "metrics"):
        for name in dict.fromkeys(k for r in found for k in r[kind]):
            rows[f"{kind}.{name}"] = [r[kind].get(name) for r in found]
    digests = [{d["path"]: data_digest(d) for d in r["data"]} for r in found]
    folder = os.path.dirname(found[0]["notebook"]) + os.sep  # paths beside the notebook are named from there
    for path in dict.fromkeys(p for d in digests for p in d):
        shown = path[len(folder):] if path.startswith(folder) else path
        rows[f"data.{shown}"] = [d.get(path, "-") for d in digests]
    table = pd.DataFrame.from_dict(rows, orient="index", columns=[r["id"] for r in found])
    if not all_rows:
        differ = [name for name, values in rows.items() if name != "duration" and
                  len({json.dumps(v, sort_keys=True, default=str) for v in values}) > 1]
        table = table.loc[differ]
    return table


def baseline(notebook: str | os.PathLike, *, workspace: str | os.PathLike | None = None) -> str | None:
    """The run the notebook's data checks compare with (data_checks.py): set by hand, else its first succeeded."""
    return Workspace.locate(workspace, notebook).store.baseline_run(str(Path(notebook).resolve()))


def set_baseline(notebook: str | os.PathLike, run_id: str, *, workspace: str | os.PathLike | None = None) -> str:
    """Make a succeeded run of the notebook its data-check baseline; returns the run's full id."""
    store = Workspace.locate(workspace, notebook).store
    chosen = store.get_run(run_id)
    path = str(Path(notebook).resolve())
    if chosen["notebook"] != path:
        raise MlopsError(f"run {chosen['id']} is a run of {chosen['notebook']}, not of {path}")
    if chosen["status"] != "succeeded":
        raise MlopsError(f"run {chosen['id']} {chosen['status']}; a baseline must be a succeeded run")
    store.set_baseline(path, chosen["id"])
    return chosen["id"]


def data_digest(entry: dict) -> str:
    """What one data read looked like, in a few characters: the start of its digest and how it was taken."""
    if not entry.get("digest"):
        return entry.get("method") or "-"
    return entry["digest"][:12] + ("" if entry.get("method") in ("sha256", "listing") else f" ({entry['method']})")


def runs(*, workspace: str | os.PathLike | None = None, limit: int | None = None, sweep_id: str | None = None,
         filter: str | None = None, sort: str | None = None, descending: bool = True):  # noqa: A002
    """A pandas DataFrame, one row per run, newest first: run, notebook, status, started, duration, then one
    `params.NAME` column per parameter and one `metrics.NAME` column per metric (MLflow's naming). With `filter`
    or `sort` (as `run_page` reads them), the runs it keeps in that order, at most `limit` (default 1000)."""
    import pandas as pd

    store = Workspace.locate(workspace).store
    if filter or sort:
        page = run_page(workspace=workspace, filter=filter or "", sort=sort or "started",
                        descending=descending, limit=limit or MAX_PAGE, sweep_id=sweep_id)
        rows, metrics = store.run_table(ids=[r["id"] for r in page["runs"]])
    else:  # built column-wise from plain rows: a dict per run and a Timestamp per cell cost 10 s at 100k runs
        rows, metrics = store.run_table(sweep_id, limit)
    run_ids, notebooks, statuses, started, durations, params = map(list, zip(*rows)) if rows else ([],) * 6
    short = {n: os.path.basename(n) for n in set(notebooks)}  # a few notebooks for many runs
    frame = pd.DataFrame({"run": run_ids, "notebook": [short[n] for n in notebooks], "status": statuses,
                          "started": pd.to_datetime(pd.Series(started, dtype="float64"), unit="s", utc=True)
                          .dt.floor("s"),  # as `runs` shows it
                          "duration": pd.Series(durations, dtype="float64")})
    loads = json.loads
    params = pd.DataFrame.from_records([loads(p) if p else {} for p in params], index=frame.index)
    frame = frame.join(params.add_prefix("params."))
    if metrics:
        values = pd.DataFrame(dict(zip(["run", "name", "value"], map(list, zip(*metrics)))))
        wide = values.pivot(index="run", columns="name", values="value")
        wide = wide[sorted(wide.columns)].add_prefix("metrics.")  # by name, as the store lists a run's metrics
        wide.columns.name = None
        frame = frame.merge(wide, left_on="run", right_index=True, how="left")
    return frame


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
          minimize: str | None = None, max_trials: int = MAX_TRIALS, backend: str = "local",
          workspace: str | os.PathLike | None = None, on_trial: Callable | None = None,
          engine_hook: Callable | None = None, **options: Any) -> SweepView:
    """Run the notebook once per point of `space` ({parameter: list, range spec or single value}; see
    search_space.py): every combination (`search="grid"`), `samples` random points, or `trials` points chosen by
    Optuna (`search="bayes"`), `parallel` at a time, on engine `backend`. On `local`, steps run on shared warm
    kernels and steps that no swept parameter reaches run once, for all trials (`options`: timeout,
    fresh_kernels). Each trial is a run grouped under the sweep id; returns
    {id, status, metric, direction, shared_steps, best, trials}."""
    from . import engines as registry

    engine, rest = _engine(backend, "sweep", workspace, options, engine_hook)
    plan = plan_sweep(notebook, space, samples=samples, seed=seed, search=search, trials=trials, parallel=parallel,
                      maximize=maximize, minimize=minimize, max_trials=max_trials)
    return registry.call(engine, "sweep", notebook, plan, on_trial=on_trial, **rest)


# -- the model registry -------------------------------------------------------------------------------------------
def register(run: str, name: str, *, metric: str | None = None, maximize: bool = True,  # noqa: F811 - `run` the id
             require: list[str] | None = None, sweep_id: str | None = None,
             notebook: str | os.PathLike | None = None, workspace: str | os.PathLike | None = None,
             max_age: str | float | None = None) -> dict:
    """Register a run's model (`run` is a run id, or "best": the succeeded run with the best `metric`, within
    `sweep_id` and among `notebook`'s runs if given) as the next version of `name`, if it passes every `require`
    gate ("accuracy>=0.9"). `max_age` ("30d"; default $MLOPS_MAX_MODEL_AGE, else none): when it becomes stale.
    Raises GateFailed, registering nothing, when a gate fails."""
    from .names import check_name
    from .registry import parse_gate
    from .registry import register as register_version

    check_name(name)
    for gate in require or []:
        parse_gate(gate)  # a malformed gate is an error before anything else
    if max_age is None and os.environ.get("MLOPS_MAX_MODEL_AGE"):
        max_age = os.environ["MLOPS_MAX_MODEL_AGE"]
    if max_age is not None:
        from .durations import parse_duration

        max_age = parse_duration(max_age, "--max-age" if "MLOPS_MAX_MODEL_AGE" not in os.environ
                                 else "--max-age (or $MLOPS_MAX_MODEL_AGE)", at_least=60.0)
    ws = Workspace.locate(workspace)
    if run == "best":
        if not metric:
            raise MlopsError("`best` needs the metric that ranks runs: --metric accuracy (with --maximize or "
                             "--minimize)")
        mine = str(Path(notebook).resolve()) if notebook else None
        best = ws.store.best_run(metric, maximize, sweep_id, mine)  # ranked by the database, not by loading runs
        if best is None:
            raise MlopsError(f"no succeeded run logged `{metric}`" + (f" in sweep {sweep_id}" if sweep_id else "")
                             + (f" among the runs of {Path(notebook).name}" if notebook else ""))
        chosen = get_run(best, workspace=ws.root)
    else:
        chosen = get_run(run, workspace=ws.root)
    return register_version(ws, chosen, name, list(require or []), max_age)


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

    from .registry import age

    ws = Workspace.locate(workspace)
    version = primary_version(ws.store, name)
    found = report(fetch_package(ws, version), ws.root / "logs" / name, window)
    return {**found, "version": version["version"], "shadow": shadow_report(ws.store.get_deployment(name)),
            "age": age(version), "outcomes": _outcomes_summary(ws, name)}


def _outcomes_summary(ws, name: str) -> list[dict]:
    """Per variant and version: outcomes joined, accuracy and mean reward (monitor's view of the feedback)."""
    from .serving.feedback import DB_NAME, FeedbackStore

    if not (ws.root / "logs" / name / DB_NAME).exists():
        return []
    groups: dict[tuple, list[dict]] = {}
    for outcome in FeedbackStore(ws.root / "logs" / name).outcomes():
        groups.setdefault((outcome["variant"], outcome["version"]), []).append(outcome)
    out = []
    for (variant, version), found in sorted(groups.items()):
        labels = [o["correct"] for o in found if o["correct"] is not None]
        rewards = [o["reward"] for o in found if o["reward"] is not None]
        out.append({"variant": variant, "version": version, "n": len(found),
                    "accuracy": sum(labels) / len(labels) if labels else None,
                    "mean_reward": sum(rewards) / len(rewards) if rewards else None})
    return out


def feedback(name: str, outcomes, *, workspace: str | os.PathLike | None = None) -> dict:
    """Outcomes known in bulk, joined to deployment `name`'s logged answers as POST /feedback joins them:
    a list of {"request_id", "outcome" | "label" | "reward"} or a DataFrame with those columns."""
    from .names import check_name
    from .serving.feedback import FeedbackStore, parse
    from .serving.model import ClientError

    check_name(name)
    ws = Workspace.locate(workspace)
    if hasattr(outcomes, "to_dict"):
        outcomes = [{k: v for k, v in row.items() if v == v} for row in outcomes.to_dict("records")]  # NaN: absent
    if not (ws.root / "logs" / name).is_dir():
        raise MlopsError(f"deployment `{name}` has logged no answers in {ws.root / 'logs'}: deploy it and let it "
                         "answer requests first")
    try:
        joined = FeedbackStore(ws.root / "logs" / name).add(parse(outcomes), wait=0)
    except ClientError as exc:
        raise MlopsError(str(exc)) from None
    return {"joined": len(joined)}


def abtest(name: str, *, metric: str | None = None, horizon: int | None = None,
           workspace: str | os.PathLike | None = None) -> dict:
    """The deployment's variants compared on their joined outcomes (serving/abtest.py): per variant n, the
    metric and its 95% interval; against the primary the difference, p-value, verdict and outcomes still needed."""
    from .names import check_name
    from .serving.abtest import compare
    from .serving.feedback import DB_NAME, FeedbackStore

    check_name(name)
    ws = Workspace.locate(workspace)
    if not (ws.root / "logs" / name / DB_NAME).exists():
        raise MlopsError(f"no outcomes for `{name}` yet: its answers carry x-request-id; send outcomes to POST "
                         "/feedback (or jupyter_mlops.feedback) and ask again")
    return {"name": name, **compare(FeedbackStore(ws.root / "logs" / name).outcomes(), metric, horizon)}


def deployments(*, workspace: str | os.PathLike | None = None, window: int = 500) -> list[dict]:
    """Each deployment with its spec, whether its server is up, and its monitor summary (or `monitor_error`)."""
    from .serving.server import is_up

    ws = Workspace.locate(workspace)
    out = []
    for row in ws.store.deployments():
        entry = {"name": row["name"], "url": row["url"], "spec": row["spec"], "up": is_up(row),
                 "updated": row["updated"], "rollout": _latest_rollout(ws.store, row["name"])}
        try:
            found = monitor(row["name"], window=window, workspace=ws.root)
            entry.update(version=found["version"], requests=found["requests"], outliers=found["outliers"],
                         drifted_features=found["drifted_features"], outcomes=found["outcomes"])
        except (MlopsError, OSError, ValueError, KeyError) as exc:
            entry["monitor_error"] = str(exc)
        out.append(entry)
    return out


# -- charts (Vega-Lite specs, charts.py): the same for `%mlops` and the panel --------------------------------------
def sweep_chart(sweep_id: str, *, width: int | None = None, workspace: str | os.PathLike | None = None) -> dict:
    """The sweep's metric against each swept parameter, its best trial marked (parallel coordinates for several)."""
    from . import charts

    ws = Workspace.locate(workspace)
    found = ws.store.get_sweep(sweep_id)
    trials = [describe_run(r) for r in ws.store.list_runs(sweep_id=sweep_id, steps=False)]
    metric = found["metric"] or _common_metric(trials)
    if metric is None:
        raise MlopsError(f"sweep `{sweep_id}` has no metric to plot: its trials logged none (log_metrics)")
    return charts.sized(charts.sweep(trials, metric, maximize=found["direction"] != "minimize",
                                     best=found["best_run"], sweep_id=sweep_id), width)


def _common_metric(runs_: list) -> str | None:
    """The metric most of these runs logged."""
    names = [n for r in runs_ for n in r["metrics"]]
    return max(sorted(set(names)), key=names.count) if names else None


def runs_chart(metric: str | None = None, *, notebook: str | os.PathLike | None = None, filter: str = "",  # noqa: A002
               limit: int = 500, width: int | None = None, workspace: str | os.PathLike | None = None) -> dict:
    """A metric across runs (the latest `limit` that `filter` keeps; only `notebook`'s when given), oldest first;
    without `metric`, the one most of them logged."""
    from . import charts

    page = run_page(workspace=workspace, filter=filter, sort="started", limit=limit, notebook=notebook)
    rows = list(reversed(page["runs"]))
    metric = metric or _common_metric(rows)
    if metric is None:
        raise MlopsError("no run here logged a metric to plot (log_metrics in the notebook's evaluate step)")
    where = f" of {Path(notebook).name}" if notebook else ""
    return charts.sized(charts.runs(rows, metric, title=f"{metric} across runs{where}"), width)


def compare_chart(run_ids: list[str], *, width: int | None = None,
                  workspace: str | os.PathLike | None = None) -> dict:
    """The runs' metrics side by side, a small chart per metric."""
    from . import charts

    if len(run_ids) < 2:
        raise MlopsError("compare needs at least two runs, e.g. `%mlops compare RUN1 RUN2 --plot`")
    return charts.sized(charts.compare([get_run(r, workspace=workspace) for r in run_ids]), width)


def monitor_chart(name: str, *, window: int = 1000, width: int | None = None,
                  workspace: str | os.PathLike | None = None) -> dict:
    """Per feature, the training data's distribution against the live one, drifted features first."""
    from . import charts

    return charts.sized(charts.monitor_drift(name, monitor(name, window=window, workspace=workspace)), width)


def traffic_chart(name: str, *, window: int = 5000, width: int | None = None,
                  workspace: str | os.PathLike | None = None) -> dict:
    """The deployment's requests per second, p50/p99 latency and traffic share per variant over its latest
    `window` logged requests, and each shadow's agreement with the primary."""
    from . import charts
    from .names import check_name
    from .serving.monitor import traffic
    from .serving.server import shadow_report

    check_name(name, "deployment")
    ws = Workspace.locate(workspace)
    shadow = shadow_report(ws.store.get_deployment(name)) or {}
    shadows = [{"shadow": variant, "agreement": v["agreement"], "compared": v["rows"]}
               for variant, v in (shadow.get("variants") or {}).items() if v.get("agreement") is not None]
    return charts.sized(charts.traffic(traffic(ws.root / "logs" / name, window), shadows,
                                       title=f"{name}: traffic"), width)


# -- schedules ----------------------------------------------------------------------------------------------------
def add_schedule(notebook: str | os.PathLike, name: str, cron: str | None = None,
                 parameters: dict[str, Any] | None = None, *,
                 timezone: str = "UTC", backend: str = "local", workspace: str | os.PathLike | None = None,
                 **options: Any) -> dict:
    """Schedule the notebook on engine `backend` (every argument checked first: cron, timezone, tags,
    parameters); returns it as `schedules` lists it, plus `lines` saying what was done. `options` are the
    engine's: on `local` missed, retries, backoff, timeout, and instead of a cron `on_data_change=True` (fires when
    what the notebook reads changes; `every` "5m", `watch_paths`); on `kubernetes` image, namespace, ..."""
    from . import engines as registry

    engine, rest = _engine(backend, "schedule", workspace, options, None)
    return registry.call(engine, "schedule", notebook, name, cron, parameters, timezone=timezone, **rest)


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


# -- notifications ------------------------------------------------------------------------------------------------
def add_notification(*, webhook: str | None = None, email: str | None = None, smtp: str | None = None,
                     events: list[str] | None = None, workspace: str | os.PathLike | None = None) -> dict:
    """Notify a webhook (POST, JSON with a Slack-compatible `text`) or an email address (through `smtp`,
    "HOST:PORT") of `events` (notify.EVENTS; default all but run.succeeded)."""
    from . import notify

    return notify.add(Workspace.locate(workspace).store, webhook=webhook, email=email, smtp=smtp, events=events)


def notifications(*, workspace: str | os.PathLike | None = None) -> dict:
    """{"notifications": [...] (webhook URLs masked), "sent": the latest deliveries, newest first}."""
    from . import notify

    store = Workspace.locate(workspace).store
    sent = [{k: r[k] for k in ("id", "notification_id", "event", "status", "attempts", "error")} |
            {"delivered": iso(r["delivered"])} for r in store.notification_outbox()]
    return {"notifications": [notify.describe(n) for n in store.notifications()], "sent": sent}


def remove_notification(notification_id: int, *, workspace: str | os.PathLike | None = None) -> None:
    if not Workspace.locate(workspace).store.remove_notification(notification_id):
        raise MlopsError(f"no notification {notification_id}; `jupyter-mlops notify list` shows them")


def test_notification(notification_id: int, *, workspace: str | os.PathLike | None = None) -> None:
    """Send one notification a test message now, in this thread; raises saying why it was not delivered."""
    from . import notify

    store = Workspace.locate(workspace).store
    found = [n for n in store.notifications() if n["id"] == notification_id]
    if not found:
        raise MlopsError(f"no notification {notification_id}; `jupyter-mlops notify list` shows them")
    payload = {"event": "test", "text": f"jupyter-mlops test message for notification {notification_id}",
               "workspace": str(Workspace.locate(workspace).root)}
    try:
        notify.send({**found[0], "payload": json.dumps(payload)})
    except Exception as exc:
        raise MlopsError(f"notification {notification_id} was not delivered: {exc}") from None
