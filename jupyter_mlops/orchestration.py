"""A run's life below the API: compile its bundle and record it, run its steps on an engine and keep the store
up to date, describe it, resume it. The API, the sweeps (trials.py), the scheduler and the engines all use these;
none of them imports the API.
"""
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
from .owners import process_owner
from .records import USABLE_STEP, RunStatus, RunView, StepStatus
from .workspace import Workspace, new_run_id


def validate(notebook: str | os.PathLike):
    """The notebook's pipeline; raises NotebookError listing every problem with its cell and a fix."""
    from .pipeline import build_pipeline

    return build_pipeline(notebook)


def say_warnings(pipeline) -> None:
    """What validate warns about, said again when a run starts (the CLI and a notebook show it on stderr): a cell
    joining a step across a skip, pod hints a local run ignores, an empty step..."""
    import logging

    log = logging.getLogger("jupyter_mlops.run")
    for warning in pipeline.warnings:
        log.warning("warning: %s", warning)


def effective_parameters(pipeline, overrides: dict[str, Any]) -> dict[str, Any]:
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


def prepare(pipeline, run_dir: Path):
    """Compile the run's own bundle; returns the step notebook paths and their fingerprints of code."""
    import nbformat

    from .compile import code_fingerprint, compile_pipeline

    bundle = run_dir / "bundle"
    if bundle.exists():
        shutil.rmtree(bundle)
    paths = compile_pipeline(pipeline, bundle)
    code = {name: code_fingerprint(nbformat.read(str(p), as_version=4)) for name, p in paths.items()}
    return paths, code


def data_baseline(store, pipeline, run_id: str) -> tuple[str | None, dict]:
    """The notebook's data-check baseline run (data_checks.py) and its steps' output profiles, {} without one."""
    chosen = store.baseline_run(str(Path(pipeline.notebook).resolve()))
    if not chosen or chosen == run_id:
        return None, {}
    try:
        record = store.get_run(chosen)
    except MlopsError:  # the baseline run was deleted since
        return None, {}
    return chosen, {s["name"]: (s.get("data_reads") or {}).get("profiles") or {} for s in record["steps"]}


def step_executor(ws: Workspace, run_id: str, pipeline, overrides: dict, max_parallel: int | None,
                  timeout: float | None, fresh_kernels: bool, on_update: Callable | None, pool=None,
                  data_checks: tuple[str, dict] | None = None):
    """What runs a run's steps on this machine, reporting into the store; its kernels start warming up at once.
    `data_checks` = (mode, thresholds) as data_checks.check_settings gives them (default: the notebook's own
    `mlops` metadata, else warn)."""
    from .data_checks import check_settings
    from .engines.steps import StepExecutor

    store = ws.store
    if data_checks is None:
        data_checks = check_settings(pipeline.settings.get("data_checks"), pipeline.settings.get("data_thresholds"))
    baseline_run, baseline = data_baseline(store, pipeline, run_id) if data_checks[0] != "off" else (None, {})

    def update(result) -> None:
        values = {"status": result.status, "started": result.started, "finished": result.finished,
                  "duration": result.duration, "output_notebook": result.output_notebook,
                  "error": result.error, "cell": result.cell, "data_reads": result.data_reads}
        if result.status == StepStatus.RUNNING:
            values["attempts"] = engine.attempts.get(result.name, 0) + 1
        if result.status != StepStatus.REUSED:
            store.update_step(run_id, result.name, **{k: v for k, v in values.items() if v is not None or
                                                       k in ("error", "cell", "finished", "duration")})
        if result.metrics:
            store.record_metrics(run_id, result.name, result.metrics)
        if on_update:
            on_update(result)

    engine = StepExecutor(pipeline, ws.run_dir(run_id) / "steps", ws.artifacts(run_id), overrides,
                         max_parallel=max_parallel, timeout=timeout, fresh_kernels=fresh_kernels,
                         on_update=update, pool=pool, baseline=baseline, baseline_run=baseline_run,
                         data_checks=data_checks)
    return engine


def execute(ws: Workspace, run_id: str, pipeline, engine, paths, reuse: set[str],
             run_timeout: float | None = None) -> RunView:
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
        store.finish_run(run_id, RunStatus.CANCELLED, "interrupted by the user")
        raise
    finally:
        if timer:
            timer.cancel()
    if expired.is_set():
        store.finish_run(run_id, RunStatus.FAILED,
                         f"timed out after {run_timeout:g} s; steps still running were stopped")
        return announce(store, describe_run(store.get_run(run_id)))
    failed = [r for r in results.values() if r.status == StepStatus.FAILED]
    if failed:
        first = failed[0]
        where = f" (cell {first.cell} of {os.path.basename(pipeline.notebook)})" if first.cell else ""
        store.finish_run(run_id, RunStatus.FAILED, f"step `{first.name}` failed{where}: {first.error}")
    elif any(r.status == StepStatus.CANCELLED for r in results.values()):
        store.finish_run(run_id, RunStatus.CANCELLED, "cancelled")
    else:
        store.finish_run(run_id, RunStatus.SUCCEEDED)
    return announce(store, describe_run(store.get_run(run_id)))


def announce(store, run: RunView) -> RunView:
    """Tell the notifications (notify.py) how a run ended: run.failed, or run.succeeded for those that asked."""
    from .notify import emit

    if run["status"] in (RunStatus.FAILED, RunStatus.SUCCEEDED):
        name = os.path.basename(run["notebook"])
        text = f"run {run['id']} of {name} {run['status']}" + (f": {run['error']}" if run["error"] else "")
        subject = {k: run[k] for k in ("id", "notebook", "status", "error", "params", "metrics", "schedule",
                                       "sweep_id", "run_dir")}
        emit(store, f"run.{run['status']}", text, run=subject)
        findings = run["data_checks"]["findings"]
        if findings:
            more = f" (and {len(findings) - 1} more)" if len(findings) > 1 else ""
            emit(store, "data_check.failed", f"run {run['id']} of {name}: {findings[0]['message']}{more}",
                 run=subject, baseline=run["data_checks"]["baseline"], findings=findings)
    return run


def run(notebook: str | os.PathLike, parameters: dict[str, Any] | None = None, *,
        workspace: str | os.PathLike | None = None, max_parallel: int | None = None, timeout: float | None = None,
        run_timeout: float | None = None, fresh_kernels: bool = False, on_update: Callable | None = None,
        check: bool = False, run_id: str | None = None, watch: Callable | None = None,
        watch_paths: list[str] | None = None, data_checks: str | None = None,
        data_thresholds: dict[str, float] | None = None, **run_fields: Any) -> dict:
    """Run a tagged notebook as a pipeline; returns the run (see `describe_run`). Bad tags or parameters raise
    before anything runs; a failed step gives a run with status `failed` (or raises StepFailed with check=True).
    `fresh_kernels=True` gives every step a never-used kernel instead of a wiped, warm one. `timeout` limits each
    cell, `run_timeout` the whole run (its steps are stopped and the run fails, saying so). `run_id` is for callers
    that hand the id out before the run is recorded (the server extension answers with it at once). `watch` is
    given the step executor before it starts (to cancel it from another thread). `watch_paths` are data the run
    reads that its steps' own record misses (relative to the notebook's folder): fingerprinted as it starts.
    `data_checks` ("warn", "strict", "off") and `data_thresholds` ({name: share}) set how the steps' output values
    are checked against the notebook's baseline run (data_checks.py); the notebook's `mlops` metadata may set both."""
    from .data_checks import check_settings

    from .engines.steps import configure_pool, early_pool
    from .parameters import coerce_parameters

    if run_id is not None:
        check_run_id(run_id)  # it names the run's folder
    if not Path(notebook).is_file():
        validate(notebook)  # says what is wrong, before any kernel starts
    pool = early_pool(str(notebook), fresh_kernels)  # the first kernel starts while the notebook is analysed
    try:
        pipeline = validate(notebook)
        overrides = coerce_parameters(pipeline.parameters, dict(parameters or {}))
        checks = check_settings(data_checks or pipeline.settings.get("data_checks"),
                                {**(pipeline.settings.get("data_thresholds") or {}), **(data_thresholds or {})})
        say_warnings(pipeline)
        configure_pool(pool, pipeline, max_parallel)
        ws = Workspace.locate(workspace, notebook)
        run_id = run_id or new_run_id()
        engine = step_executor(ws, run_id, pipeline, overrides, max_parallel, timeout, fresh_kernels, on_update, pool,
                               checks)
        if watch:
            watch(engine)
        if watch_paths:
            run_fields["watched"] = watched_data(notebook, watch_paths)
        paths = record_run(ws, run_id, notebook, pipeline, overrides, **run_fields)
        result = execute(ws, run_id, pipeline, engine, paths, set(), run_timeout)
    finally:
        pool.close()
    if check and result["status"] != RunStatus.SUCCEEDED:
        raise StepFailed(f"run {run_id} {result['status']}: {result['error']}")
    return result


def record_run(ws: Workspace, run_id: str, notebook, pipeline, overrides: dict, **run_fields: Any) -> dict:
    """Compile the run's bundle and record the run with its pending steps; returns the step notebooks."""
    store = ws.store  # opened before the run's folder exists: a new store is never made beside run folders
    run_dir = ws.run_dir(run_id)
    paths, code = prepare(pipeline, run_dir)
    values = effective_parameters(pipeline, overrides)
    fingerprints = step_fingerprints(pipeline, code, values)
    steps = [{"name": s.name, "position": i, "kind": s.kind, "fingerprint": fingerprints[s.name]}
             for i, s in enumerate(pipeline.steps)]
    run_fields.setdefault("owner", process_owner())
    store.create_run(run_id, str(Path(notebook).resolve()), pipeline.notebook_hash, values, str(run_dir),
                     steps, **run_fields)
    write_run_file(run_dir, overrides)
    return paths


def watched_data(notebook, paths: list[str]) -> list[dict]:
    """Fingerprints of the paths a run was told to watch (relative ones from the notebook's folder)."""
    from .data_reads import fingerprint

    folder = Path(notebook).resolve().parent
    entries = []
    for path in paths:
        if "://" in path:
            entries.append(fingerprint(path, "url"))
            continue
        full = (folder / os.path.expanduser(path)).resolve()
        if not full.exists():
            raise MlopsError(f"--watch {path}: {full} does not exist; name a file, a folder or an fsspec URL the "
                             "notebook reads")
        entries.append(fingerprint(str(full), "folder" if full.is_dir() else "file"))
    return entries


def run_data(record: dict) -> list[dict]:
    """What a run read, each once with the first step that read it (`step`; None for --watch paths), leaving out
    what one of its own steps wrote (a file handed from step to step is not the run's input)."""
    written = {p for s in record["steps"] for p in ((s.get("data_reads") or {}).get("writes") or [])}
    found: dict[tuple, dict] = {}
    for entry in record.get("watched") or []:
        found.setdefault((entry["kind"], entry["path"]), {**entry, "step": None})
    for step in record["steps"]:
        for entry in (step.get("data_reads") or {}).get("reads") or []:
            if entry["path"] not in written:
                found.setdefault((entry["kind"], entry["path"]), {**entry, "step": step["name"]})
    return list(found.values())


def write_run_file(run_dir: Path, overrides: dict) -> None:
    """The parameters given on the command line, beside the bundle: what `resume` passes again."""
    from .files import write_atomic

    write_atomic(run_dir / "run.json", json.dumps({"parameters": overrides}, indent=1, default=str))


def check_resumable(run_id: str, *, workspace: str | os.PathLike | None = None) -> dict:
    """The run's record if it can be resumed (failed or cancelled, its notebook still there); else why not."""
    record = Workspace.locate(workspace).store.get_run(run_id)
    run_id = record["id"]
    if record["status"] == RunStatus.SUCCEEDED:
        raise MlopsError(f"run {run_id} succeeded: nothing to resume; start a new one with `jupyter-mlops run`")
    if record["status"] == RunStatus.RUNNING:
        raise MlopsError(f"run {run_id} is still running; wait for it, or interrupt it first")
    if not Path(record["notebook"]).is_file():
        raise MlopsError(f"run {run_id}'s notebook {record['notebook']} no longer exists; put it back to resume")
    return record


def resume(run_id: str, *, workspace: str | os.PathLike | None = None, max_parallel: int | None = None,
           timeout: float | None = None, fresh_kernels: bool = False, on_update: Callable | None = None) -> dict:
    """Rerun a failed or cancelled run from its failed steps, reusing every upstream step whose code, parameters
    and inputs are unchanged. The notebook is read again, so a fix made since the failure is picked up."""
    from .artifacts import read_manifest
    from .parameters import coerce_parameters

    ws = Workspace.locate(workspace)
    record = check_resumable(run_id, workspace=ws.root)
    run_id = record["id"]
    pipeline = validate(record["notebook"])
    run_dir = Path(record["run_dir"])
    given = json.loads((run_dir / "run.json").read_text())["parameters"] if (run_dir / "run.json").exists() else {}
    overrides = coerce_parameters(pipeline.parameters, given)
    paths, code = prepare(pipeline, run_dir)
    fingerprints = step_fingerprints(pipeline, code, effective_parameters(pipeline, overrides))

    before = {s["name"]: s for s in record["steps"]}
    reuse: set[str] = set()
    for step in pipeline.steps:
        old = before.get(step.name)
        if (old and old["status"] in USABLE_STEP and old["fingerprint"] == fingerprints[step.name]
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
                     "status": StepStatus.REUSED if kept else StepStatus.PENDING, "attempts": old.get("attempts") or 0,
                     **{k: old.get(k) if kept else None for k in ("started", "finished", "duration",
                                                                  "output_notebook", "data_reads")}})
        if not kept and old.get("output_notebook") and Path(old["output_notebook"]).exists():
            superseded.append((Path(old["output_notebook"]), old.get("attempts") or 1))
    ws.store.replace_steps(run_id, rows)
    for path, attempt in superseded:  # keep the earlier attempt's notebook beside the new one
        path.rename(path.with_suffix(f".attempt{attempt}.ipynb"))
    ws.store.update_run(run_id, status=RunStatus.RUNNING, notebook_hash=pipeline.notebook_hash, error=None,
                        finished=None, duration=None, owner=process_owner())
    engine = step_executor(ws, run_id, pipeline, overrides, max_parallel, timeout, fresh_kernels, on_update)
    try:
        return execute(ws, run_id, pipeline, engine, paths, reuse)
    finally:
        engine.close()


def iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds") if ts else None


def describe_run(record: dict) -> RunView:
    """A run as JSON-ready data: id, status, params, metrics, started, duration, steps, ..."""
    steps = [{"name": s["name"], "kind": s["kind"], "status": s["status"], "started": iso(s["started"]),
              "duration": s["duration"], "output_notebook": s["output_notebook"], "error": s["error"],
              "cell": s["cell"], "attempts": s["attempts"]} for s in record["steps"]]
    return {"id": record["id"], "notebook": record["notebook"], "notebook_hash": record["notebook_hash"],
            "status": record["status"], "params": record["params"], "metrics": record["metrics"],
            "started": iso(record["started"]), "finished": iso(record["finished"]),
            "duration": record["duration"], "error": record["error"], "run_dir": record["run_dir"],
            "sweep_id": record["sweep_id"], "schedule": record["schedule"],
            "scheduled_for": record["scheduled_for"], "steps": steps, "data": run_data(record),
            "data_checks": data_findings(record)}


def data_findings(record: dict) -> dict:
    """The data checks of a run: {"baseline": run id or None, "findings": [...]} (each naming step, variable and
    column)."""
    steps = [s.get("data_reads") or {} for s in record["steps"]]
    return {"baseline": next((s["baseline"] for s in steps if s.get("baseline")), None),
            "findings": [f for s in steps for f in s.get("findings") or []]}
