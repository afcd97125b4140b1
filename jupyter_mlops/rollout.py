"""Progressive delivery: `deploy NAME --canary V --progressive` raises the canary's share of requests step by step
(10, 25, 50, then 100: production) while it stays as healthy as the primary, and sends it back to 0 the first time
it is not, the `production` alias unchanged.

At the end of each step (its `interval` passed and at least `min_requests` answered by the canary) the canary is
compared with the primary on what the step's requests did:
- the share of requests answered with an error (any 4xx or 5xx: a canary that refuses inputs the primary takes is
  as broken as one that fails on them), which may exceed the primary's by at most `max_error_increase`;
- the p99 latency (a lower quantile while a step's requests are too few to estimate it: see tail_quantile),
  which may be at most `max_p99_ratio` times the primary's, or P99_SLACK more (the histogram's buckets are
  milliseconds wide at the low end);
- where outcomes were sent back (POST /feedback), the A-B test of serving/abtest.py: a canary significantly worse
  on accuracy or reward is rolled back.
The figures come from the deployment's own `/metrics` (every worker's counters summed): read when a step begins,
kept in the store, and read again when it ends, so a controller that restarts loses no step.

The controller is one pass (`advance`) that any process may make: `jupyter-mlops scheduler` makes it each time
round, beside the schedules. The rollout's place (step, weight, the counters its step began with) is in the store,
and each decision is one transaction: it claims (rollout, step) and moves the deployment's weight (and, at the end,
the alias) together. Two controllers decide a step once; one killed at any moment leaves a deployment serving the
weight of the last decision, and the next pass goes on from there. A rollout made with --backend kubernetes reads
its pods and changes the cluster through kube/rollout.py; its controller is a CronJob in the namespace.
"""
from __future__ import annotations

import time
from typing import Any

from .errors import MlopsError

DEFAULT_STEPS = (10.0, 25.0, 50.0, 100.0)
DEFAULT_INTERVAL = 300.0
DEFAULT_MIN_REQUESTS = 100
MAX_ERROR_INCREASE = 0.01  # one percentage point more of the canary's requests may fail than of the primary's
MAX_P99_RATIO = 1.5
P99_SLACK = 0.005  # seconds: below this a p99 difference is within the histogram's resolution
NO_CONTROLLER = ("no scheduler is running on this workspace, so the rollout will not advance: start one with "
                 "`jupyter-mlops scheduler` (or run JupyterLab with c.JupyterMlops.scheduler = True)")


# -- setting up --------------------------------------------------------------------------------------------------
def check_steps(steps: str | list | tuple | None) -> list[float]:
    """The canary's weights, percent: increasing, above 0, the last one 100 (where it becomes production)."""
    if steps is None:
        return list(DEFAULT_STEPS)
    parts = steps.split(",") if isinstance(steps, str) else list(steps)
    try:
        weights = [float(p) for p in parts]
    except (TypeError, ValueError):
        raise MlopsError(f"--steps `{steps}`: write the canary's weights in percent, e.g. 10,25,50,100") from None
    if not weights or weights[-1] != 100 or any(not 0 < w <= 100 for w in weights):
        raise MlopsError(f"--steps `{steps}`: each weight between 0 and 100, the last one 100 (there the canary "
                         "becomes production), e.g. 10,25,50,100")
    if any(b <= a for a, b in zip(weights, weights[1:])):
        raise MlopsError(f"--steps `{steps}`: the weights must increase, e.g. 10,25,50,100")
    if len(weights) < 2:
        raise MlopsError(f"--steps `{steps}`: give at least one weight below 100, where the canary is compared with "
                         "the primary, e.g. 10,100")
    return weights


def settings(interval: str | float | None = None, min_requests: int | None = None,
             max_error_increase: float | None = None, max_p99_ratio: float | None = None) -> dict:
    """A rollout's settings, checked, each error naming its option."""
    from .durations import parse_duration

    found = {"interval": DEFAULT_INTERVAL if interval is None else parse_duration(interval, "--interval", 1.0),
             "min_requests": DEFAULT_MIN_REQUESTS if min_requests is None else int(min_requests),
             "max_error_increase": MAX_ERROR_INCREASE if max_error_increase is None else float(max_error_increase),
             "max_p99_ratio": MAX_P99_RATIO if max_p99_ratio is None else float(max_p99_ratio)}
    if found["min_requests"] < 1:
        raise MlopsError(f"--min-requests {min_requests}: the canary's requests each step needs, at least 1")
    if not 0 <= found["max_error_increase"] < 1:
        raise MlopsError(f"--max-error-increase {max_error_increase}: a share between 0 and 1, e.g. 0.01")
    if found["max_p99_ratio"] < 1:
        raise MlopsError(f"--max-p99-ratio {max_p99_ratio}: at least 1 (1.5: the canary's p99 may be 50% higher)")
    return found


def plan(store, name: str, canary: int | None, steps=None, **options: Any) -> dict:
    """A progressive rollout of `canary` checked against the registry and the options (each error naming its
    option), before anything is deployed: {name, canary, primary_version, steps, settings}."""
    from .registry import primary_version, resolve

    if canary is None:
        raise MlopsError("--progressive rolls out a canary: give --canary VERSION")
    weights, found = check_steps(steps), settings(**options)
    primary = primary_version(store, name)["version"]
    resolve(store, f"{name}:{canary}")  # the version must exist
    if int(canary) == primary:
        raise MlopsError(f"--canary {canary} is the version {name} serves already (production); roll out another")
    return {"name": name, "canary": int(canary), "primary_version": primary, "steps": weights, "settings": found}


def start(store, planned: dict, spec: dict | None = None) -> dict:
    """Record a planned rollout (a running one of the same deployment is stopped; the deployment given `spec`
    in the same transaction when one is given); the controller takes it from here. Returns its id and a line
    saying what it will do."""
    from .owners import process_owner

    steps, options = planned["steps"], planned["settings"]
    line = (f"rolling out canary version {planned['canary']} progressively: {steps[0]:g}%, then " +
            ", ".join(f"{w:g}%" for w in steps[1:-1]) + (", " if len(steps) > 2 else "") +
            f"production; each step at least {_seconds(options['interval'])} and {options['min_requests']} canary "
            "requests, judged against the primary on errors, p99 latency and outcomes sent back")
    rollout_id, _stopped = store.start_rollout(planned, line, process_owner(), spec)
    return {"id": rollout_id, "line": line}


def begin(store, planned: dict, controller_runs: bool = False) -> dict:
    """`start` for a deploy: its id, and the lines a user is told (a warning when nothing will advance it:
    no scheduler on this workspace, unless the engine runs a controller of its own)."""
    from .owners import alive

    started = start(store, planned)
    lines = [started["line"]]
    if not controller_runs and not alive(store, "scheduler"):
        lines.append(f"warning: {NO_CONTROLLER}")
    return {"id": started["id"], "lines": lines}


def roll_out_new_version(store, name: str, version: int, options: dict) -> str:
    """A version just registered (a schedule's retraining) rolled out progressively on the deployment of its
    model on this machine: what happened, in words."""
    deployed = store.get_deployment(name)
    if deployed is None:
        return f"not rolled out: no deployment of {name} here (deploy it first)"
    planned = plan(store, name, version, options.get("steps"), **options.get("settings", {}))
    started = start(store, planned, {**deployed["spec"], "canary": version, "weight": planned["steps"][0]})
    return f"rollout {started['id']} started at {planned['steps'][0]:g}%"


def check_options(given: dict | bool | None) -> dict | None:
    """A schedule's `rollout` (True for the defaults, or {steps, interval, min_requests, ...}) checked and
    stored as {steps, settings}."""
    if not given:
        return None
    given = {} if given is True else dict(given)
    steps = check_steps(given.pop("steps", None))
    return {"steps": steps, "settings": settings(**given)}


def stop(store, name: str, reason: str) -> list[int]:
    from .owners import process_owner

    return [r["id"] for r in store.stop_rollouts(name, reason, process_owner())]


def _seconds(value: float) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if value >= size and value % size == 0:
            return f"{value / size:g}{unit}"
    return f"{value:g}s"


# -- what the servers counted -----------------------------------------------------------------------------------
def since(before: dict | None, now: dict) -> dict:
    """The counts between two readings. A counter that went down means the server restarted meanwhile: its counts
    since the restart are all this step's, so the later reading is taken whole."""
    before = before or {}
    restarted = any(now.get(v, {}).get("requests", 0.0) < b["requests"] for v, b in before.items())
    if restarted or not before:
        return now
    out = {}
    for variant, entry in now.items():
        old = before.get(variant, {"requests": 0.0, "failed": 0.0, "buckets": {}})
        out[variant] = {"requests": entry["requests"] - old["requests"], "failed": entry["failed"] - old["failed"],
                        "buckets": {le: n - old["buckets"].get(le, 0.0) for le, n in entry["buckets"].items()}}
    return out


def quantile(buckets: dict, q: float) -> float | None:
    """The q-quantile of a cumulative histogram, linear within its bucket (as Prometheus' histogram_quantile)."""
    bounds = sorted((float(le), n) for le, n in buckets.items())
    if not bounds or bounds[-1][1] <= 0:
        return None
    rank = q * bounds[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in bounds:
        if count >= rank:
            if upper == float("inf"):
                return lower  # past the last finite bucket: its bound is all that is known
            return lower + (upper - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = upper, count
    return lower


# -- judging a step ----------------------------------------------------------------------------------------------
def tail_quantile(requests: float) -> float:
    """The highest of p99, p95, p90, p75, p50 that `requests` answers estimate with at least 5 of them above it: a
    p99 of 100 requests is their single slowest, one stall of a busy machine, not the canary's tail."""
    return next((q for q in (0.99, 0.95, 0.9, 0.75) if requests * (1 - q) >= 5), 0.5)


def judge(rollout: dict, window: dict, outcomes: list[dict] | None) -> tuple[bool | None, str, dict]:
    """(healthy, reason, evidence) for a step's requests; healthy is None while the canary has answered fewer than
    the rollout's min_requests."""
    options = rollout["settings"]
    empty = {"requests": 0.0, "failed": 0.0, "buckets": {}}
    canary, primary = window.get("canary", empty), window.get("primary", empty)
    if canary["requests"] < options["min_requests"]:
        return None, (f"waiting for canary requests: {canary['requests']:.0f} of {options['min_requests']} this "
                      "step"), {}
    rates = {v: e["failed"] / e["requests"] if e["requests"] else 0.0 for v, e in (("canary", canary),
                                                                                  ("primary", primary))}
    q = tail_quantile(min(canary["requests"], primary["requests"]))
    tail = {"quantile": f"p{q * 100:g}", "canary": quantile(canary["buckets"], q),
            "primary": quantile(primary["buckets"], q)}
    evidence: dict[str, Any] = {"requests": {"canary": canary["requests"], "primary": primary["requests"]},
                                "error_rate": rates, "latency_seconds": tail}
    said = [f"errors {rates['canary']:.1%} vs {rates['primary']:.1%}"]
    problems = []
    if rates["canary"] - rates["primary"] > options["max_error_increase"]:
        problems.append(f"the canary failed {rates['canary']:.1%} of its {canary['requests']:.0f} requests against "
                        f"the primary's {rates['primary']:.1%} (at most {options['max_error_increase']:.1%} more)")
    if tail["canary"] is not None and tail["primary"] is not None:
        name, mine, theirs = tail["quantile"], tail["canary"], tail["primary"]
        said.append(f"{name} {mine * 1000:.1f} ms vs {theirs * 1000:.1f} ms")
        if mine > max(theirs * options["max_p99_ratio"], theirs + P99_SLACK):
            problems.append(f"the canary's {name} latency is {mine * 1000:.1f} ms against the primary's "
                            f"{theirs * 1000:.1f} ms (at most {options['max_p99_ratio']:g}x)")
    test = _abtest(rollout, outcomes)
    if test is not None:
        evidence["abtest"] = test
        said.append(f"{test['metric']} {test['canary']:.3g} vs {test['primary']:.3g} "
                    f"({test['verdict']}, p={test['p_value']:.3g})")
        if test["verdict"] == "worse":
            problems.append(f"the canary's {test['metric']} is significantly worse: {test['canary']:.3g} against "
                            f"{test['primary']:.3g} (p={test['p_value']:.3g}, n={test['n']})")
    if problems:
        return False, "; ".join(problems), evidence
    return True, "healthy: " + ", ".join(said), evidence


def _abtest(rollout: dict, outcomes: list[dict] | None) -> dict | None:
    """The canary against the primary on the outcomes sent back for either version, when there are any."""
    from .serving.abtest import compare

    wanted = {("canary", rollout["canary"]), ("primary", rollout["primary_version"])}
    chosen = [o for o in outcomes or () if (o["variant"], o["version"]) in wanted  # answered during the rollout
              and o["answered"] >= rollout["created"]]
    try:
        found = compare(chosen)
    except MlopsError:  # no outcomes of a kind the test reads
        return None
    by = {(v["variant"], v["version"]): v for v in found["variants"]}
    canary, primary = by.get(("canary", rollout["canary"])), by.get(("primary", rollout["primary_version"]))
    if canary is None or primary is None or "verdict" not in canary:
        return None
    return {"metric": found["metric"], "canary": canary["value"], "primary": primary["value"],
            "p_value": canary["p_value"], "verdict": canary["verdict"], "n": min(canary["n"], primary["n"])}


# -- the controller ----------------------------------------------------------------------------------------------
def advance(ws, now: float | None = None, only: str | None = None) -> list[dict]:
    """One pass over the running rollouts (`only`: that deployment's): a step that began is judged once its
    interval has passed, and the decision applied; returns the decisions this pass made. A rollout on Kubernetes
    first gets on the cluster what the store says and the cluster does not have yet."""
    now = time.time() if now is None else now
    store = ws.store
    decided = []
    # the running ones, and the latest few of any status: one ended by a pass cut short may still owe the cluster
    found = {r["id"]: r for r in store.rollouts(name=only, limit=20) + store.rollouts(name=only, status="running")}
    for rollout in sorted(found.values(), key=lambda r: r["id"]):
        on_cluster = _cluster(rollout)
        try:
            if on_cluster is not None and rollout.get("applied") != on_cluster.desired():
                on_cluster.apply()
                store.mark_rollout_applied(rollout["id"], on_cluster.desired())
            if rollout["status"] != "running":
                continue
            made = _advance_one(ws, rollout, now, on_cluster)
        except (OSError, ValueError, MlopsError) as exc:  # a server or the cluster away: try again next pass
            store.note_rollout(rollout["id"], rollout["step"], note=f"not judged now: {exc}")
            continue
        if made:
            decided.append(made)
    return decided


def _cluster(rollout: dict):
    """The Kubernetes side of a rollout made with --backend kubernetes, else None (this machine)."""
    if not (rollout["settings"] or {}).get("kubernetes"):
        return None
    from .kube.rollout import Cluster

    return Cluster(rollout)


def _advance_one(ws, rollout: dict, now: float, on_cluster) -> dict | None:
    from .serving.metrics import read_counters

    store, name = ws.store, rollout["name"]
    spec = None  # this machine's deployment spec, moved by the decision; on a cluster, the HTTPRoute is
    if on_cluster is None:
        deployed = store.get_deployment(name)
        if deployed is None or not deployed.get("url"):
            store.note_rollout(rollout["id"], rollout["step"], note="waiting for the deployment's server to start")
            return None
        spec, counters = deployed["spec"], read_counters(deployed["url"], name)
    else:
        counters = on_cluster.counters()
    if rollout["step_started"] is None:  # the step's clock starts when its counters are first read
        store.note_rollout(rollout["id"], rollout["step"], counters=counters, step_started=now)
        return None
    left = rollout["step_started"] + rollout["settings"]["interval"] - now
    if left > 0:
        store.note_rollout(rollout["id"], rollout["step"], note=f"step {rollout['step'] + 1} of "
                           f"{len(rollout['steps']) - 1}: judged in {_seconds(round(left))}")
        return None
    healthy, reason, evidence = judge(rollout, since(rollout["counters"], counters), _outcomes(ws, name))
    if healthy is None:
        store.note_rollout(rollout["id"], rollout["step"], note=reason)
        return None
    made = _decide(ws, rollout, spec, healthy, reason, evidence, counters)
    if made and on_cluster is not None:  # recorded: now the cluster (and again next pass, if this is cut short)
        moved = store.rollouts(name=name, limit=5)
        on_cluster.rollout = next(r for r in moved if r["id"] == rollout["id"])
        on_cluster.apply()
        store.mark_rollout_applied(rollout["id"], on_cluster.desired())
    return made


def _outcomes(ws, name: str) -> list[dict] | None:
    from .serving.feedback import DB_NAME, FeedbackStore

    folder = ws.root / "logs" / name
    return FeedbackStore(folder).outcomes() if (folder / DB_NAME).exists() else None


def _decide(ws, rollout: dict, spec: dict | None, healthy: bool, reason: str, evidence: dict,
            counters: dict) -> dict | None:
    """Record a judged step: the next weight, production, or back to 0 (with this machine's deployment `spec`
    moved in the same transaction); notified once recorded."""
    from .notify import emit
    from .owners import process_owner

    steps, step = rollout["steps"], rollout["step"]
    if not healthy:
        decision = {"action": "rolled_back", "status": "rolled_back", "step": step, "weight": 0.0}
        spec = spec and {**spec, "canary": None}
        text = f"rolled back canary version {rollout['canary']} of {rollout['name']} at {steps[step]:g}%: {reason}"
    elif step + 1 == len(steps) - 1:  # the next weight is 100: the canary is production
        decision = {"action": "promoted", "status": "promoted", "step": step + 1, "weight": 100.0}
        spec = spec and {**spec, "canary": None}
        text = f"promoted version {rollout['canary']} of {rollout['name']} to production: {reason}"
    else:
        decision = {"action": "advanced", "status": "running", "step": step + 1, "weight": steps[step + 1]}
        spec = spec and {**spec, "canary": rollout["canary"], "weight": steps[step + 1]}
        text = (f"canary version {rollout['canary']} of {rollout['name']} from {steps[step]:g}% to "
                f"{steps[step + 1]:g}%: {reason}")
    decision.update(reason=reason, evidence=evidence, counters=counters, decided_by=process_owner())
    if not ws.store.decide_rollout(rollout, decision, spec, promote=decision["action"] == "promoted"):
        return None  # another controller decided this step
    emit(ws.store, f"rollout.{decision['action']}", text, deployment=rollout["name"], canary=rollout["canary"],
         weight=decision["weight"], reason=reason)
    return {"name": rollout["name"], "rollout": rollout["id"], "action": decision["action"],
            "weight": decision["weight"], "reason": reason, "text": text}


# -- reading -----------------------------------------------------------------------------------------------------
def history(store, name: str, limit: int = 20) -> list[dict]:
    """The deployment's rollouts, newest first, each with its decisions in order."""
    rollouts = store.rollouts(name=name, limit=limit)
    decisions = store.rollout_decisions([r["id"] for r in rollouts]) if rollouts else []
    for rollout in rollouts:
        rollout.pop("counters", None)
        rollout["weight"] = (rollout["steps"][rollout["step"]] if rollout["status"] == "running" else
                             100.0 if rollout["status"] == "promoted" else 0.0)
        rollout["decisions"] = [d for d in decisions if d["rollout_id"] == rollout["id"]]
    return rollouts
