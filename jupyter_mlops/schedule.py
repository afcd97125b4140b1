"""Scheduled notebook runs: cron schedules whose ticks fire exactly once.

A schedule names a notebook, a cron expression (croniter) in a timezone, parameters and policies. The scheduler
(`jupyter-mlops scheduler`) wakes up every few seconds and, for each active schedule, works out the ticks that came
due since it last looked. Exactly once: a tick fires only for the scheduler whose INSERT of (schedule, tick) into
the store succeeds; any other scheduler on the same workspace gets a uniqueness error and moves on. A scheduler
that dies mid-run leaves a run owned by a dead process, which the store marks failed when next opened.

Policies: `timeout` (a run taking longer is stopped and fails); `missed` ticks (older than the grace period, e.g.
while no scheduler ran): `skip` them, or run the
`latest` once; `overlap`: a tick is skipped while the previous run of the same schedule still runs; `retries` with
exponential `backoff`. The clock is injectable, so tests move time instead of sleeping.

Triggers: a schedule made with `on_data_change` has no cron. Every `every` seconds the scheduler compares what the
schedule's latest finished run read (data_reads.py: files, folders, URLs, `--watch` paths, each fingerprinted)
with what is there now, and fires when something changed. A change is claimed in the store under the key
(that run, the new fingerprint), exactly like a cron tick: it fires once, however many schedulers look. A schedule
that has not run yet fires once to set its baseline.
"""
from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from datetime import datetime, timezone as dt_timezone
from pathlib import Path
from typing import Any, Callable

from .errors import MlopsError

MISSED_POLICIES = ("skip", "latest")
log = logging.getLogger(__name__)
DEFAULT_EVERY = 60.0  # seconds between a trigger's checks
DEFAULT_DRIFT_WINDOW = 3600.0  # a drift trigger fires at most once in this many seconds


def parse_every(text: str | float) -> float:
    """`30s`, `5m`, `1h`, `2d` or a number of seconds; at least 10 s (each check reads file metadata)."""
    from .durations import parse_duration

    return parse_duration(text, "--every", at_least=10.0)


def timezone_of(name: str):
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise MlopsError(f"unknown timezone `{name}`; use an IANA name such as UTC, Europe/Berlin or "
                         "America/New_York") from None


def check_cron(expression: str) -> str:
    """Five fields (minute hour day month weekday) or a macro such as @daily, as Kubernetes CronJobs take them,
    and a date that exists (not `0 0 31 2 *`)."""
    from croniter import CroniterBadDateError, croniter

    fields = expression.split()
    if not croniter.is_valid(expression) or not (len(fields) == 5 or (len(fields) == 1 and fields[0][:1] == "@")):
        raise MlopsError(f"`{expression}` is not a cron expression; five fields: minute hour day month weekday, "
                         "e.g. \"0 3 * * *\" (every day at 03:00) or \"*/15 * * * *\"" +
                         (f" (it has {len(fields)} fields; schedules run at most once a minute)"
                          if len(fields) > 5 else ""))
    try:
        croniter(expression, datetime.now(dt_timezone.utc)).get_next(float)
    except CroniterBadDateError:
        raise MlopsError(f"`{expression}` never fires: no date matches its day and month fields") from None
    return expression


def next_ticks(expression: str, zone: str, after: float, count: int = 1) -> list[float]:
    """The first `count` cron ticks after `after` (epoch seconds), in the schedule's timezone: computed directly,
    whatever the expression's frequency."""
    from croniter import croniter

    iterator = croniter(expression, datetime.fromtimestamp(after, timezone_of(zone)))
    return [iterator.get_next(float) for _ in range(count)]


def latest_tick(expression: str, zone: str, after: float, until: float) -> float | None:
    """The latest cron tick t with after < t <= until, or None. Ticks fall on whole seconds, so searching back
    from the second after `until` finds one at `until` itself."""
    from croniter import croniter

    tick = croniter(expression, datetime.fromtimestamp(math.floor(until) + 1, timezone_of(zone))).get_prev(float)
    return tick if after < tick <= until else None


def iso(ts: float, zone: str = "UTC") -> str:
    """A time as ISO 8601 in a timezone: a schedule's times are shown in its own."""
    return datetime.fromtimestamp(ts, timezone_of(zone)).isoformat(timespec="seconds")


def _trigger(notebook: Path, cron: str | None, on_data_change: bool, every, watch_paths, on_drift: str | None,
             threshold: float | None, drift_window) -> dict:
    """What fires the schedule besides a clock, checked: {"on": "data-change", "every": s, "watch": [...]} or
    {"on": "drift", "model": NAME, "threshold": share, "window": s, "every": s}; {} for a cron schedule."""
    chosen = [flag for flag, given in (("--cron", cron), ("--on-data-change", on_data_change),
                                        ("--on-drift", on_drift)) if given]
    if len(chosen) != 1:
        raise MlopsError(f"a schedule fires on one thing; give one of {', '.join(chosen)}, not both" if chosen else
                         "a schedule needs --cron \"0 3 * * *\" (a clock), --on-data-change (when the data the "
                         "notebook reads changes) or --on-drift MODEL (when a deployed model's inputs drift)")
    if (every is not None or watch_paths) and cron:
        raise MlopsError("--every and --watch go with --on-data-change or --on-drift, not --cron")
    if (threshold is not None or drift_window is not None) and not on_drift:
        raise MlopsError("--threshold and --drift-window go with --on-drift MODEL")
    for path in watch_paths or []:
        if "://" not in path and not (notebook.parent / os.path.expanduser(path)).exists():
            raise MlopsError(f"--watch {path}: {notebook.parent / path} does not exist; name a file, a folder or "
                             "an fsspec URL the notebook reads")
    if cron:
        return {}
    interval = parse_every(every if every is not None else DEFAULT_EVERY)
    if on_data_change:
        return {"on": "data-change", "every": interval, "watch": list(watch_paths or [])}
    from .durations import parse_duration
    from .names import check_name

    if threshold is not None and not 0 <= float(threshold) < 1:
        raise MlopsError(f"--threshold {threshold}: the share of features that must drift, from 0 (any one) to "
                         "below 1")
    return {"on": "drift", "model": check_name(on_drift, "model name"), "threshold": float(threshold or 0.0),
            "window": parse_duration(drift_window if drift_window is not None else DEFAULT_DRIFT_WINDOW,
                                     "--drift-window", at_least=60.0),
            "every": interval, "watch": list(watch_paths or [])}


def _then(register: str | None, require: list[str] | None, rollout: dict | bool | None = None) -> dict:
    """What follows a succeeded run: registration of its model as a new version of `register`, behind gates, and
    then maybe its progressive `rollout` on the model's deployment (rollout.py)."""
    if not register:
        if require or rollout:
            raise MlopsError(f"{'--require' if require else '--rollout'} goes with --register NAME (the gates a "
                             "retrained model must pass, before it is rolled out)")
        return {}
    from .names import check_name
    from .registry import parse_gate
    from .rollout import check_options

    for gate in require or []:
        parse_gate(gate)
    then: dict = {"register": check_name(register), "require": list(require or [])}
    if rollout:
        then["rollout"] = check_options(rollout)
    return then


def add(ws, notebook: str, name: str, cron: str | None, parameters: dict[str, Any] | None = None, *,
        timezone: str = "UTC", missed: str = "skip", retries: int = 0, backoff: float = 60.0,
        timeout: float | None = None, on_data_change: bool = False, every: str | float | None = None,
        watch_paths: list[str] | None = None, on_drift: str | None = None, threshold: float | None = None,
        drift_window: str | float | None = None, register: str | None = None, require: list[str] | None = None,
        rollout: dict | bool | None = None, stored_notebook: str | None = None,
        clock: Callable[[], float] = time.time) -> dict:
    """Check everything (cron or trigger, timezone, notebook, parameters, policies, what follows a run) and store
    the schedule. `register`/`require`: a succeeded run's model becomes a new version of `register` when it
    passes the gates; `rollout` (True, or {steps, interval, min_requests}): that version is then rolled out
    progressively on the model's deployment. `stored_notebook`: where the scheduler that fires it finds the
    notebook, when that is not here (the notebook's path inside an image, for a scheduler in a pod)."""
    from .parameters import coerce_parameters
    from .pipeline import build_pipeline

    from .names import check_name

    check_name(name, "schedule name")
    trigger = {**_trigger(Path(notebook).resolve(), cron, on_data_change, every, watch_paths, on_drift, threshold,
                          drift_window), **_then(register, require, rollout)}
    if on_drift and not ws.store.model_versions(on_drift):
        raise MlopsError(f"--on-drift {on_drift}: no model `{on_drift}` is registered; `jupyter-mlops models` lists "
                         "them")
    if cron:
        check_cron(cron)
    timezone_of(timezone)
    if missed not in MISSED_POLICIES:
        raise MlopsError(f"--missed must be one of {', '.join(MISSED_POLICIES)}, got `{missed}`")
    if retries < 0 or backoff < 0 or (timeout is not None and timeout <= 0):
        raise MlopsError("--retries and --backoff must not be negative, --timeout must be positive")
    path = Path(notebook).resolve()
    pipeline = build_pipeline(path)  # unknown notebook or bad tags: an error now, not at 3 a.m.
    values = coerce_parameters(pipeline.parameters, dict(parameters or {}))
    ws.store.add_schedule(name=name, notebook=stored_notebook or str(path), cron=cron or "", timezone=timezone,
                          params=json.dumps(values, default=str), missed=missed, retries=retries, backoff=backoff,
                          timeout=timeout, created=clock(), trigger_spec=json.dumps(trigger) if trigger else None)
    return describe(ws.store.get_schedule(name), clock())


def describe(row: dict, now: float | None = None) -> dict:
    """A schedule as JSON: for a trigger, `next_tick` is its next check and `when` says what fires it."""
    after = max(row["last_tick"] or row["created"], now or 0)
    zone = row["timezone"]
    spec = json.loads(row["trigger_spec"]) if row.get("trigger_spec") else {}
    if spec.get("on") == "data-change":
        when = f"on data change (checked every {spec['every']:g} s)"
    elif spec.get("on") == "drift":
        share = f"more than {spec['threshold']:.0%} of" if spec["threshold"] else "any of"
        when = (f"on drift of {spec['model']} ({share} its features; checked every {spec['every']:g} s, at most "
                f"once per {spec['window']:g} s)")
    else:
        when = row["cron"]
    if spec.get("register"):
        when += f", then register {spec['register']}" + (f" if {' and '.join(spec['require'])}"
                                                         if spec["require"] else "")
        if spec.get("rollout"):
            when += " and roll it out progressively (" + ", ".join(f"{w:g}%" for w in spec["rollout"]["steps"]) + ")"
    upcoming = (max((row["last_tick"] or row["created"]) + spec["every"], now or 0) if spec.get("on")
                else next_ticks(row["cron"], zone, after)[0])
    return {"name": row["name"], "notebook": row["notebook"], "cron": row["cron"] or None,
            "trigger": spec if spec.get("on") else None, "then": {k: spec[k] for k in ("register", "require", "rollout")
                                                                  if k in spec} or None,
            "when": when, "timezone": row["timezone"],
            "params": json.loads(row["params"]), "status": row["status"], "missed": row["missed"],
            "retries": row["retries"], "backoff": row["backoff"], "timeout": row["timeout"],
            "last_tick": iso(row["last_tick"], zone) if row["last_tick"] else None,
            "next_tick": iso(upcoming, zone) if row["status"] == "active" else None}


def drift_change(ws, spec: dict, now: float) -> tuple[str, str, dict] | None:
    """Whether the deployed model's latest requests drifted past the trigger's threshold: (claim key for this
    window of time, reason, the monitor's report), or None (too few requests yet counts as no drift)."""
    from .registry import fetch_package, primary_version
    from .serving.monitor import DRIFT_MIN_ROWS, report

    version = primary_version(ws.store, spec["model"])
    found = report(fetch_package(ws, version), ws.root / "logs" / spec["model"])
    drifted, total = found["drifted_features"], len(found["features"])
    if found["window_rows"] < DRIFT_MIN_ROWS or not drifted or len(drifted) / total <= spec["threshold"]:
        return None
    names = ", ".join(drifted[:5]) + (f" and {len(drifted) - 5} more" if len(drifted) > 5 else "")
    reason = (f"{spec['model']} version {version['version']}: {len(drifted)} of {total} features drifted ({names}) "
              f"over its latest {found['window_rows']} requests")
    return f"drift:{int(now // spec['window'])}", reason, {**found, "version": version["version"]}


def data_change(store, row: dict) -> tuple[str, str] | None:
    """Whether what the schedule's latest finished run read has changed: (claim key, reason in words), or None.
    A schedule with no finished run yet fires once for its baseline."""
    from .data_reads import changed, combined
    from .orchestration import run_data

    last = store.last_schedule_run(row["name"])
    if last is None:
        return "baseline", "first run: it sets the data baseline"
    entries = run_data(last)
    differ = {(d["kind"], d["path"]): d for d in changed(entries)}
    if not differ:
        return None
    now = [differ[(e["kind"], e["path"])]["now"] if (e["kind"], e["path"]) in differ else e for e in entries]
    folder = os.path.dirname(row["notebook"])
    names = [os.path.relpath(d["path"], folder) if d["path"].startswith(folder + os.sep) else d["path"]
             for d in differ.values()]
    what = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return f"{last['id']}:{combined(now)}", f"data changed since run {last['id']}: {what}"


NO_SCHEDULER = ("no scheduler is running on this workspace, so schedules will not fire: start one with "
                "`jupyter-mlops scheduler` (or run JupyterLab with c.JupyterMlops.scheduler = True)")


def schedulers_alive(store, now: float | None = None) -> list[dict]:
    """The schedulers that made a pass lately (owners.alive)."""
    from .owners import alive

    return alive(store, "scheduler", now)


class Scheduler:
    """Fires due ticks; `tick(now)` is one pass (tests drive it), `run_forever` loops."""

    def __init__(self, ws, *, grace: float = 60.0, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep, run: Callable | None = None):
        from .orchestration import run as run_notebook

        self.ws = ws
        self.grace = grace
        self.clock = clock
        self.sleep = sleep
        self.run = run or run_notebook
        self.threads: list[threading.Thread] = []

    def tick(self, now: float | None = None, wait: bool = False, only: str | None = None) -> list[dict]:
        """One pass over the active schedules; returns the ticks this scheduler claimed (and what it did).
        `only`: that schedule alone, its trigger checked now whatever its interval (a Kubernetes CronJob's pod:
        the CronJob keeps the interval)."""
        now = self.clock() if now is None else now
        store = self.ws.store
        claimed = []
        rows = [store.get_schedule(only)] if only else store.schedules()
        for row in rows:
            if row["status"] != "active":
                continue
            spec = json.loads(row["trigger_spec"]) if row.get("trigger_spec") else {}
            if spec.get("on"):
                fired = self._check_trigger(row, spec, now, due=bool(only))
                if fired:
                    claimed.append(fired)
                continue
            # only the latest due tick matters: it fires if within the grace period (or `missed: latest`); the
            # ones before it were missed either way
            latest = latest_tick(row["cron"], row["timezone"], row["last_tick"] or row["created"], now)
            if latest is None:
                continue
            chosen = latest if now - latest <= self.grace or row["missed"] == "latest" else None
            store.advance_schedule(row["name"], latest)
            if chosen is None:
                continue
            if not store.claim_tick(row["name"], chosen, now):
                continue  # another scheduler has it: exactly once
            if store.schedule_is_running(row["name"]):
                store.finish_tick(row["name"], chosen, "skipped", "the previous run of this schedule is still running")
                claimed.append({"schedule": row["name"], "tick": iso(chosen), "status": "skipped"})
                continue
            thread = threading.Thread(target=self._fire, args=(row, chosen), name=f"mlops-schedule-{row['name']}",
                                      daemon=True)
            self.threads.append(thread)
            thread.start()
            claimed.append({"schedule": row["name"], "tick": iso(chosen), "status": "fired"})
        try:
            from .registry import announce_stale

            announce_stale(self.ws, now)  # model.stale, once per version past its max age
        except Exception as exc:  # a damaged package must not stop the schedules
            log.warning("checking models' ages: %s", exc)
        if only is None:
            claimed += self._rollouts(now)
        if wait:
            self.join()
        return claimed

    def _rollouts(self, now: float) -> list[dict]:
        """The progressive rollouts' controller (rollout.py), one pass: what it decided."""
        from .rollout import advance

        try:
            return [{"rollout": d["name"], "status": d["action"], "reason": d["reason"]}
                    for d in advance(self.ws, now)]
        except Exception as exc:  # a rollout that cannot be judged must not stop the schedules
            log.warning("advancing rollouts: %s", exc)
            return []

    def _check_trigger(self, row: dict, spec: dict, now: float, due: bool = False) -> dict | None:
        """One check of a triggered schedule, when its interval has passed (or `due`); fires on a change not yet
        claimed."""
        if not due and now - (row["last_tick"] or 0) < spec["every"]:
            return None
        store = self.ws.store
        store.advance_schedule(row["name"], now)
        drift = None
        if spec["on"] == "drift":
            try:
                drift = drift_change(self.ws, spec, now)
            except (MlopsError, OSError, ValueError, KeyError) as exc:  # no deployment or log yet: nothing to judge
                log.info("schedule %s: drift of %s not judged: %s", row["name"], spec["model"], exc)
            change = drift[:2] if drift else None
        else:
            change = data_change(store, row)
        if change is None or not store.claim_tick(row["name"], now, now, trigger_key=change[0], reason=change[1]):
            return None  # nothing changed, or another scheduler fired for this change
        if drift:
            from .notify import emit

            report = drift[2]
            emit(store, "drift.detected", change[1], model=spec["model"], version=report["version"],
                 drifted_features=report["drifted_features"], schedule=row["name"],
                 psi={n: f["psi"] for n, f in report["features"].items() if f["drifted"]})
        if store.schedule_is_running(row["name"]):
            store.finish_tick(row["name"], now, "skipped", "the previous run of this schedule is still running")
            return {"schedule": row["name"], "tick": iso(now), "status": "skipped", "reason": change[1]}
        thread = threading.Thread(target=self._fire, args=(row, now), name=f"mlops-schedule-{row['name']}",
                                  daemon=True)
        self.threads.append(thread)
        thread.start()
        return {"schedule": row["name"], "tick": iso(now), "status": "fired", "reason": change[1]}

    def fire_now(self, name: str) -> dict:
        """Run a schedule once, now, outside its cron (`schedule run NAME`); waits for the run."""
        row = self.ws.store.get_schedule(name)
        now = self.clock()
        if not self.ws.store.claim_tick(name, now, now):
            raise MlopsError(f"schedule `{name}` was just fired; try again")
        self._fire(row, now)
        return self.ws.store.tick_history(name)[-1]

    def join(self) -> None:
        for thread in self.threads:
            thread.join()
        self.threads = []

    def _fire(self, row: dict, tick: float) -> None:
        store = self.ws.store
        attempt, result = 0, None
        while True:
            try:
                watched = (json.loads(row["trigger_spec"]) if row.get("trigger_spec") else {}).get("watch")
                result = self.run(row["notebook"], json.loads(row["params"]), workspace=self.ws.root,
                                  run_timeout=row["timeout"], schedule=row["name"], scheduled_for=iso(tick),
                                  **({"watch_paths": watched} if watched else {}))
                status, error = result["status"], result["error"]
            except Exception as exc:  # the notebook changed into something that no longer validates
                status, error = "failed", str(exc)
            store.record_tick_run(row["name"], tick, result["id"] if result else None, attempt + 1)
            if status == "succeeded" or attempt >= row["retries"]:
                break
            self.sleep(row["backoff"] * (2 ** attempt))
            attempt += 1
        spec = json.loads(row["trigger_spec"]) if row.get("trigger_spec") else {}
        outcome = self._register(spec, result["id"]) if status == "succeeded" and spec.get("register") else None
        store.finish_tick(row["name"], tick, status, error, outcome)
        if status != "succeeded":
            from .notify import emit

            emit(store, "schedule.failed", f"schedule {row['name']} failed after {attempt + 1} attempt(s): {error}",
                 schedule=row["name"], tick=iso(tick), run=result["id"] if result else None, error=error)

    def _register(self, spec: dict, run_id: str) -> str:
        """A retrained model registered behind the schedule's gates; what happened, in words (a failed gate is
        notified as gate.failed by the registry)."""
        from .orchestration import describe_run
        from .registry import register

        try:
            version = register(self.ws, describe_run(self.ws.store.get_run(run_id)), spec["register"],
                               spec["require"])
        except MlopsError as exc:
            return f"not registered: {str(exc).splitlines()[-1].strip()}"
        said = f"registered {spec['register']} version {version['version']}"
        if spec.get("rollout"):
            from .rollout import roll_out_new_version

            try:
                said += "; " + roll_out_new_version(self.ws.store, spec["register"], version["version"],
                                                    spec["rollout"])
            except MlopsError as exc:
                said += f"; not rolled out: {exc}"
        return said

    def run_forever(self, interval: float = 5.0, stop: threading.Event | None = None) -> None:
        from .notify import deliver_due
        from .owners import process_owner

        stop = stop or threading.Event()
        owner = process_owner()
        while not stop.is_set():
            # said in the store, so `schedule add` and the panel can tell whether schedules will fire
            self.ws.store.beat("scheduler", owner, {"last_pass": self.clock(), "interval": interval})
            self.tick()
            deliver_due(self.ws.store)  # notifications a process that ended could not send
            self.threads = [t for t in self.threads if t.is_alive()]
            stop.wait(interval)
