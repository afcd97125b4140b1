"""`jupyter-mlops` (also `jupyter mlops`): a thin layer over the Python API. Imports stay lazy so --help is fast."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

STATUS_MARK = {"succeeded": "ok", "failed": "FAILED", "cancelled": "cancelled", "skipped": "skipped",
               "reused": "reused", "running": "running", "pending": "pending"}


def _workspace_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workspace", metavar="DIR",
                   help="workspace folder (default: $MLOPS_WORKSPACE, else .mlops beside the notebook, or in "
                        "the current folder)")

def _server_limit_options(p: argparse.ArgumentParser) -> None:
    def size(text: str) -> int:
        from .serving.limits import parse_size  # here, not above: it imports asyncio, 35 ms of every start-up

        try:
            return parse_size(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    def workers(text: str) -> int:
        from .serving.workers import available_cores  # here: the module is only needed by a server

        count = available_cores() if text == "auto" else int(text) if text.isdigit() else 0
        if not 1 <= count <= 64:
            raise argparse.ArgumentTypeError(f"{text!r}: give a number of processes from 1 to 64, or auto (one "
                                             "per core)")
        return count

    p.add_argument("--workers", type=workers, default=1, metavar="N|auto",
                   help="processes serving the port: one predicts on one core; auto: one per core (default 1)")
    g = p.add_argument_group("limits", "what one client may cost the server (README: Limits and trust)")
    g.add_argument("--max-body", type=size, default="8MiB", metavar="SIZE",
                   help="largest request body; larger ones get 413 unread (default 8MiB)")
    g.add_argument("--header-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="close connections that have not sent a request's headers by then (default 10)")
    g.add_argument("--log-max-bytes", type=size, default="64MiB", metavar="SIZE",
                   help="rotate the request log past this size (default 64MiB)")
    g.add_argument("--log-keep", type=int, default=4, metavar="N", help="rotated request logs kept (default 4)")
    g.add_argument("--log-max-request", type=size, default="16KiB", metavar="SIZE",
                   help="most one request adds to the log; larger ones log their first rows (default 16KiB)")

def _engine_options(p: argparse.ArgumentParser, verb: str, what: str) -> None:
    """--backend with the engines that can `verb`, and each one's settings as flags (engines/abc.py)."""
    if _building_for and _building_for not in p.prog.split():
        return  # a command not being run: the registry (~80 ms: entry points, engine modules) is not needed
    from . import engines

    able = engines.names(verb)
    p.add_argument("--backend", choices=able, default="local",
                   help=f"where {what}: " + "; ".join(f"{n}: {engines.get(n, verb).summary}" for n in able))
    flags: dict[str, list] = {}
    for name in able:
        for option in engines.get(name, verb).options_for(verb):
            if option.shown:
                flags.setdefault(option.flag, [option]).append(name)
    for flag, (option, *owners) in flags.items():
        where = f"--backend {' or '.join(owners)}: "
        if option.type is bool:
            p.add_argument(flag, dest=option.name, action="store_true", help=where + option.help)
        else:
            p.add_argument(flag, dest=option.name, type=option.type, default=None,
                           metavar=option.name.upper(), help=where + option.help)


_building_for: str | None = None  # set while main builds the parser for one command


def _parser(prog: str = "jupyter-mlops", command: str | None = None) -> argparse.ArgumentParser:
    """Every command's parser; with `command`, only that one's engine flags (others are not parsed)."""
    global _building_for
    _building_for = command
    try:
        return _full_parser(prog)
    finally:
        _building_for = None


def _full_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Run a tagged notebook as a tracked, parameterized pipeline.",
        epilog="Tags: parameters, setup, data, train, evaluate, serve, step:NAME, after:NAME, skip "
               "(Kale's tags work too). See README.md.")
    parser.add_argument("--version", dest="show_version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _pipeline_verbs(sub)
    _tracking_verbs(sub)
    _registry_verbs(sub)
    _serving_verbs(sub)
    _packaging_verbs(sub)
    _scheduling_verbs(sub)
    _notify_verbs(sub)
    _feedback_verbs(sub)
    return parser


def _pipeline_verbs(sub) -> None:
    """The notebook as a pipeline: validate, compile, run, sweep, resume."""
    p = sub.add_parser("validate", help="check the tags and print the steps and their edges")
    p.add_argument("notebook", nargs="?", help="the notebook (in %%mlops: the current one when left out)")
    p.add_argument("--json", action="store_true", help="print the pipeline as JSON")

    p = sub.add_parser("compile", help="write pipeline.yaml and one papermill notebook per step")
    p.add_argument("notebook", nargs="?", help="the notebook (in %%mlops: the current one when left out)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for the bundle")

    p = sub.add_parser("run", help="run the notebook as a pipeline and record it")
    p.add_argument("notebook", nargs="?", help="the notebook (in %%mlops: the current one when left out)")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="set a parameter (typed from the parameters cell); repeatable")
    p.add_argument("--parallel", type=int, default=None, metavar="N",
                   help="most steps to run at once (default: number of CPUs)")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS", help="time limit per cell")
    p.add_argument("--json", action="store_true", help="print the finished run as JSON")
    p.add_argument("--fresh-kernels", action="store_true",
                   help="give every step a never-used kernel (default: warm kernels, wiped between steps)")
    p.add_argument("--watch", action="append", default=None, metavar="PATH",
                   help="data the run reads that is not found by itself (a file, a folder or an fsspec URL "
                        "opened by native code): fingerprinted with what the steps read; repeatable")
    p.add_argument("--data-checks", choices=["warn", "strict", "off"], default=None,
                   help="check each step's output tables against the notebook's baseline run: findings are warnings "
                        "(warn, the default), fail the step (strict), or are not looked for (off)")
    p.add_argument("--data-threshold", action="append", default=None, metavar="NAME=SHARE",
                   help="null_increase (default 0.05), out_of_range (0.05), row_change (0.5); repeatable")
    _engine_options(p, "run", "the run executes")
    p.add_argument("--run-id", help=argparse.SUPPRESS)  # given by the Kubernetes engine to the run in its pod
    p.add_argument("--run-id-prefix", help=argparse.SUPPRESS)  # a sweep's pod: its run id is PREFIX-INDEX
    p.add_argument("--publish", action="store_true", help=argparse.SUPPRESS)  # the pod leaves its results for it
    p.add_argument("--trial-of", metavar="FILE.json",
                   help="take the parameters at index $JOB_COMPLETION_INDEX of this JSON list (a sweep exported "
                        "as a Kubernetes Indexed Job)")
    _workspace_option(p)

    p = sub.add_parser("sweep", help="run the notebook over a grid or random sample of parameters, in parallel",
                       description="Swept parameters: -p C 0.01,0.1,1 (list), -p C 0.01..10:5 (5 points), "
                                   "-p C 1e-4..1:5:log (log-spaced), -p n 1..5 (every int); several form a grid.")
    p.add_argument("notebook", nargs="?", help="the notebook (in %%mlops: the current one when left out)")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "SPEC"),
                   help="a parameter and its values; repeatable")
    p.add_argument("--search", choices=["grid", "random", "bayes"], default=None,
                   help="grid (default), random (with --samples N) or bayes (Optuna, with --trials N)")
    p.add_argument("--samples", type=int, default=None, metavar="N", help="N random points instead of the grid")
    p.add_argument("--trials", type=int, default=None, metavar="N", help="number of trials for --search bayes")
    p.add_argument("--seed", type=int, default=0, help="random seed for --samples (default 0)")
    p.add_argument("--parallel", type=int, default=2, metavar="N", help="steps running at once (default 2)")
    p.add_argument("--max-trials", type=int, default=10_000, metavar="N",
                   help="refuse a sweep of more trials than this, before making them (default 10000)")
    goal = p.add_mutually_exclusive_group()
    goal.add_argument("--maximize", metavar="METRIC", help="the best trial has the highest METRIC")
    goal.add_argument("--minimize", metavar="METRIC", help="the best trial has the lowest METRIC")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS", help="time limit per cell")
    p.add_argument("--fresh-kernels", action="store_true", help="give every step a never-used kernel")
    p.add_argument("--json", action="store_true", help="print the sweep and its trials as JSON")
    _engine_options(p, "sweep", "the trials run")
    _workspace_option(p)

    p = sub.add_parser("resume", help="rerun a failed run from its failed step, reusing upstream results")
    p.add_argument("run_id", metavar="RUN")
    p.add_argument("--parallel", type=int, default=None, metavar="N")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS")
    p.add_argument("--json", action="store_true")
    p.add_argument("--fresh-kernels", action="store_true", help="give every step a never-used kernel")
    _workspace_option(p)


def _tracking_verbs(sub) -> None:
    """What ran: runs, compare, show."""
    p = sub.add_parser("runs", help="list runs, newest first")
    p.add_argument("--json", action="store_true", help="print a JSON array")
    p.add_argument("--sweep", metavar="ID", help="only the trials of this sweep")
    p.add_argument("--limit", type=int, default=None, metavar="N")
    p.add_argument("--filter", metavar="WORDS", default=None,
                   help='keep the runs matching every word: "accuracy>0.9 status=succeeded C=10 digits" (a metric, '
                        "parameter or field compared, or a word in the id, status, notebook, sweep or schedule)")
    p.add_argument("--sort", metavar="KEY", default=None,
                   help="sort by started (default), id, status, duration, params.NAME or metrics.NAME, highest first")
    p.add_argument("--ascending", action="store_true", help="lowest first")
    p.add_argument("--plot", nargs="?", const="", default=None, metavar="METRIC",
                   help="a chart of METRIC across the runs (default: the metric most of them logged; in %%mlops, the "
                        "runs of this notebook), printed as a Vega-Lite spec (JSON); %%mlops draws it")
    _workspace_option(p)

    p = sub.add_parser("compare", help="parameters and metrics of runs side by side, differences first")
    p.add_argument("run_ids", nargs="+", metavar="RUN")
    p.add_argument("--all", action="store_true", help="also the rows where every run agrees")
    p.add_argument("--json", action="store_true")
    p.add_argument("--plot", action="store_true",
                   help="the runs' metrics as bar charts, printed as a Vega-Lite spec (JSON); %%mlops draws it")
    _workspace_option(p)

    p = sub.add_parser("baseline", help="the run a notebook's data checks compare with (default: its first "
                                        "succeeded run)")
    p.add_argument("notebook")
    p.add_argument("run_id", nargs="?", help="the new baseline run (left out: show the current one)")
    _workspace_option(p)

    p = sub.add_parser("show", help="one run with its steps, metrics and output notebooks")
    p.add_argument("run_id", metavar="RUN")
    p.add_argument("--json", action="store_true")
    _workspace_option(p)


def _registry_verbs(sub) -> None:
    """The model registry: register, models, promote, rollback."""
    p = sub.add_parser("register", help="register a run's model as a new version, behind quality gates")
    p.add_argument("run_id", metavar="RUN|best", help="a run id, or `best` (the best run by --metric)")
    p.add_argument("--name", required=True, help="the model's name in the registry")
    p.add_argument("--metric", help="ranks the runs for `best`")
    direction = p.add_mutually_exclusive_group()
    direction.add_argument("--maximize", action="store_true", help="best = highest --metric (default)")
    direction.add_argument("--minimize", action="store_true", help="best = lowest --metric")
    p.add_argument("--require", action="append", default=[], metavar="GATE",
                   help='a quality gate, e.g. "accuracy>=0.9"; repeatable; a failed gate registers nothing')
    p.add_argument("--sweep", metavar="ID", help="choose `best` among this sweep's trials")
    p.add_argument("--max-age", metavar="DURATION",
                   help="the version is stale this long after it is registered, e.g. 30d: model.stale is notified, "
                        "/metrics and monitor show its age (default $MLOPS_MAX_MODEL_AGE, else never)")
    # not `notebook`: %mlops fills an unset `notebook` with the kernel's own and fails where it cannot tell
    p.add_argument("--notebook", metavar="NB", dest="best_of",
                   help="choose `best` among this notebook's runs (%%mlops: this notebook's, unless --notebook all)")
    p.add_argument("--json", action="store_true")
    _workspace_option(p)

    p = sub.add_parser("models", help="registered models, their versions and aliases")
    p.add_argument("--json", action="store_true")
    _workspace_option(p)

    p = sub.add_parser("promote", help="point an alias (default: production) at a model version")
    p.add_argument("name")
    p.add_argument("model_version", type=int, metavar="VERSION")
    p.add_argument("--alias", default="production")
    _workspace_option(p)

    p = sub.add_parser("rollback", help="point an alias back at the version it held before")
    p.add_argument("name")
    p.add_argument("--alias", default="production")
    _workspace_option(p)


def _serving_verbs(sub) -> None:
    """Models behind HTTP: serve, deploy, undeploy, monitor."""
    p = sub.add_parser("serve", help="serve a registered model over HTTP (Open Inference Protocol v2 and MLflow)")
    p.add_argument("model", metavar="NAME[:VERSION|@ALIAS]")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    _server_limit_options(p)
    _workspace_option(p)

    p = sub.add_parser("deploy", help="serve a model's production version with a canary and/or a shadow version; "
                                      "`deploy history NAME`: its progressive rollouts' decisions")
    p.add_argument("name", metavar="NAME | history NAME")
    p.add_argument("history_of", nargs="?", metavar="NAME", help=argparse.SUPPRESS)
    p.add_argument("--host", help="--backend local: the address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="--backend local: the port (default 8080)")
    p.add_argument("--canary", type=int, metavar="VERSION", help="a version that takes --weight percent of requests")
    p.add_argument("--weight", type=float, default=10.0, help="the canary's share of requests, percent (default 10)")
    p.add_argument("--shadow", type=int, metavar="VERSION",
                   help="a version that gets a copy of every request; its answers are compared, never returned")
    p.add_argument("--sticky-header", metavar="HEADER", help="route by this header's hash: one user, one variant")
    rolling = p.add_argument_group("progressive delivery (the scheduler's controller moves the canary's weight)")
    rolling.add_argument("--progressive", action="store_true",
                         help="raise the canary's weight step by step while it is as healthy as the primary (errors, "
                              "p99, outcomes); at 100 it becomes production, unhealthy it goes back to 0")
    rolling.add_argument("--steps", metavar="W,W,..,100", help="the canary's weights, percent (default 10,25,50,100)")
    rolling.add_argument("--interval", metavar="DURATION", help="each step at least this long (default 5m)")
    rolling.add_argument("--min-requests", type=int, metavar="N",
                         help="canary requests a step needs before it is judged (default 100)")
    rolling.add_argument("--max-error-increase", type=float, metavar="SHARE",
                         help="how much more of the canary's requests may fail than of the primary's (default 0.01)")
    rolling.add_argument("--max-p99-ratio", type=float, metavar="RATIO",
                         help="the canary's p99 latency against the primary's, at most (default 1.5)")
    _server_limit_options(p)
    _engine_options(p, "deploy", "the servers run")
    _workspace_option(p)

    p = sub.add_parser("undeploy", help="stop a deployment's server and forget the deployment (its logs stay)")
    p.add_argument("name")
    _engine_options(p, "undeploy", "the deployment runs")
    _workspace_option(p)

    p = sub.add_parser("monitor", help="drift and outliers of a served model's logged requests")
    p.add_argument("name")
    p.add_argument("--window", type=int, default=1000, help="latest logged rows to compare (default 1000)")
    p.add_argument("--top", type=int, default=20, help="features to list (drifted first, then by PSI)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--plot", choices=["drift", "traffic"], default=None,
                   help="drift: training against live histograms per feature; traffic: requests/s, latency and "
                        "traffic share per variant over time; printed as a Vega-Lite spec (JSON), drawn by %%mlops")
    _workspace_option(p)


def _packaging_verbs(sub) -> None:
    """Images and manifests: build, export."""
    p = sub.add_parser("build", help="a container image for the notebook (or just its build context)")
    p.add_argument("notebook")
    p.add_argument("--tag", "-t", help="the image's name:tag (default: the notebook's name:latest)")
    p.add_argument("--base-image", default="python:3.11-slim",
                   help="an image with python3 and its venv module (default python:3.11-slim)")
    p.add_argument("--context-only", action="store_true", help="write the build context to -o DIR, build nothing")
    p.add_argument("-o", "--output", metavar="DIR", help="where the build context goes (default: a temporary folder)")
    p.add_argument("--builder", choices=["docker", "podman", "buildah"], help="default: the first one found")
    p.add_argument("--builder-arg", action="append", default=[], metavar="ARG",
                   help="passed to the builder's build command, e.g. --builder-arg=--network=host; repeatable")
    p.add_argument("--wheel", metavar="PATH", help="the jupyter_mlops wheel to install (default: built from source)")
    p.add_argument("--with", dest="extra", action="append", default=[], metavar="DIST",
                   help="also install this distribution, pinned from this environment (e.g. s3fs for artifacts on "
                        "S3 with --backend kubernetes); repeatable")

    p = sub.add_parser("export", help="Kubernetes manifests for the notebook (run Job, CronJob, sweep, serving), or "
                                      "a Kubeflow Pipelines v2 pipeline (kfp: a task per step)")
    p.add_argument("format", choices=["k8s", "kfp"])
    p.add_argument("notebook")
    p.add_argument("-o", "--output", required=True, metavar="DIR|FILE",
                   help="k8s: folder for the YAML files; kfp: the pipeline's YAML file")
    p.add_argument("--image", required=True, help="the image `jupyter-mlops build` made for this notebook")
    p.add_argument("--namespace", default="default")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="a parameter of the run (with --sweep: a swept parameter's values); repeatable")
    p.add_argument("--schedule", metavar="CRON", help="also a CronJob running the notebook on this schedule")
    p.add_argument("--timezone", default="UTC", help="the CronJob's IANA timezone (default UTC)")
    p.add_argument("--sweep", action="store_true",
                   help="the -p values are a sweep: an Indexed Job with one pod per trial")
    p.add_argument("--samples", type=int, metavar="N", help="with --sweep: N random points instead of the grid")
    p.add_argument("--parallel", type=int, default=2, metavar="N", help="with --sweep: trials at once (default 2)")
    p.add_argument("--model", metavar="NAME", help="also serve this registered model (Deployments, Services, "
                                                   "HTTPRoute); canary/shadow as deployed, or as given")
    p.add_argument("--canary", type=int, metavar="VERSION")
    p.add_argument("--weight", type=float, default=10.0, help="the canary's percent of requests (default 10)")
    p.add_argument("--shadow", type=int, metavar="VERSION")
    p.add_argument("--gateway", default="mlops-gateway", help="the Gateway the HTTPRoute attaches to")
    p.add_argument("--cpu", default="1", help="CPU request of each pod (default 1)")
    p.add_argument("--memory", default="2Gi", help="memory request and limit of each pod (default 2Gi)")
    p.add_argument("--pvc", default="mlops-workspace", help="the PersistentVolumeClaim holding the workspace "
                                                            "(default mlops-workspace; `none`: an emptyDir)")
    p.add_argument("--artifacts", metavar="URL", help="an object-store URL (s3://bucket/prefix) for artifacts")
    p.add_argument("--artifacts-secret", metavar="SECRET", help="a Secret whose keys become the pods' env "
                                                                "(object-store credentials)")
    p.add_argument("--store-secret", metavar="SECRET", help="a Secret whose key `url` is the team store's URL")
    _workspace_option(p)


def _scheduling_verbs(sub) -> None:
    """Cron: schedule, scheduler."""
    p = sub.add_parser("schedule", help="cron schedules of notebook runs: add, list, pause, resume, delete, run, "
                                        "history")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = actions.add_parser("add", help="schedule a notebook")
    a.add_argument("notebook")
    a.add_argument("--name", required=True)
    a.add_argument("--cron", help='five fields, e.g. "0 3 * * *" (or fire on a change: --on-data-change)')
    a.add_argument("--on-data-change", action="store_true",
                   help="fire when the data the notebook's last run read changes (files, folders, URLs; the first "
                        "check runs it once for a baseline)")
    a.add_argument("--every", metavar="DURATION", help="with --on-data-change: how often to check, e.g. 30s, 5m "
                                                       "(default 1m)")
    a.add_argument("--watch", action="append", default=None, metavar="PATH",
                   help="with --on-data-change: data the notebook reads that is not found by itself; repeatable")
    a.add_argument("--on-drift", metavar="MODEL",
                   help="fire when the deployed MODEL's latest requests drift from its training data")
    a.add_argument("--threshold", type=float, metavar="SHARE",
                   help="with --on-drift: the share of features that must drift (default 0: any one)")
    a.add_argument("--drift-window", metavar="DURATION", help="with --on-drift: fire at most once per DURATION "
                                                              "(default 1h)")
    a.add_argument("--register", metavar="NAME",
                   help="register each succeeded run's model as a new version of NAME (behind --require gates)")
    a.add_argument("--require", action="append", default=None, metavar="GATE",
                   help='with --register: a gate such as "accuracy>=0.9"; repeatable')
    a.add_argument("--rollout", action="store_true",
                   help="with --register: roll the new version out progressively on the model's deployment "
                        "(as deploy --canary V --progressive; the --rollout-* flags as deploy's)")
    a.add_argument("--rollout-steps", metavar="W,W,..,100", help="with --rollout: the canary's weights")
    a.add_argument("--rollout-interval", metavar="DURATION", help="with --rollout: each step at least this long")
    a.add_argument("--rollout-min-requests", type=int, metavar="N", help="with --rollout: canary requests per step")
    a.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    a.add_argument("--timezone", default="UTC", help="IANA name, e.g. Europe/Berlin (default UTC)")
    a.add_argument("--missed", choices=["skip", "latest"],
                   help="ticks missed while no scheduler ran: skip them (default), or run the latest once")
    a.add_argument("--retries", type=int, help="reruns of a failed run (default 0)")
    a.add_argument("--backoff", type=float, help="seconds before the first retry; doubles each time (default 60)")
    a.add_argument("--timeout", type=float, default=None, help="seconds a run may take before it is stopped")
    _engine_options(a, "schedule", "it fires")
    _workspace_option(a)
    a = actions.add_parser("list", help="schedules with their next tick")
    a.add_argument("--json", action="store_true")
    _workspace_option(a)
    for action, text in (("pause", "stop firing"), ("resume", "fire again"), ("delete", "remove the schedule"),
                         ("run", "run it once now"), ("history", "its ticks and their runs")):
        a = actions.add_parser(action, help=text)
        a.add_argument("name")
        if action == "history":
            a.add_argument("--json", action="store_true")
        _workspace_option(a)

    p = sub.add_parser("scheduler", help="the scheduler daemon: fires due schedules, exactly once per tick, and "
                                         "drives progressive rollouts")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between passes (default 5)")
    p.add_argument("--rollout", metavar="NAME", help="with --once: the progressive rollout of deployment NAME alone "
                                                     "(what its Kubernetes CronJob's pod runs)")
    p.add_argument("--once", action="store_true", help="one pass, wait for its runs, and exit")
    p.add_argument("--only", metavar="NAME", help="with --once: that schedule alone, its trigger checked now (what "
                                                  "a Kubernetes CronJob's pod runs)")
    _workspace_option(p)


def _feedback_verbs(sub) -> None:
    """Outcomes of answers and the A-B test on them: feedback, abtest."""
    p = sub.add_parser("feedback", help="join outcomes known in bulk to a deployment's answers (by request id)")
    p.add_argument("name", help="the deployment (model name)")
    p.add_argument("file", help="CSV or JSON: request_id and one of outcome, label, reward per row")
    _workspace_option(p)
    p = sub.add_parser("abtest", help="a deployment's variants compared on their outcomes: interval, p-value, verdict")
    p.add_argument("name")
    p.add_argument("--metric", choices=["accuracy", "reward"], help="default: accuracy when labels were sent")
    p.add_argument("--horizon", type=int, metavar="N",
                   help="the outcomes per variant the test waits for: verdicts before it are interim (no peeking)")
    p.add_argument("--json", action="store_true")
    _workspace_option(p)


def _feedback(args: argparse.Namespace) -> int:
    from . import api
    from .errors import MlopsError

    path = Path(args.file)
    if not path.is_file():
        raise MlopsError(f"no file {args.file}: give a CSV or JSON of request_id and outcome")
    if path.suffix.lower() == ".json":
        outcomes = json.loads(path.read_text())
    else:
        import pandas as pd

        outcomes = pd.read_csv(path, dtype={"request_id": str})
    done = api.feedback(args.name, outcomes, workspace=args.workspace)
    print(f"{done['joined']} outcomes joined to {args.name}'s answers")
    return 0


def _abtest(args: argparse.Namespace) -> int:
    from . import api

    found = api.abtest(args.name, metric=args.metric, horizon=args.horizon, workspace=args.workspace)
    if args.json:
        print(json.dumps(found, indent=1))
        return 0
    rows = [[v["variant"], v["version"], v["n"], f"{v['value']:.4g}", f"[{v['low']:.4g}, {v['high']:.4g}]",
             f"{v['difference']:+.4g}" if "difference" in v else "", f"{v['p_value']:.3g}" if "p_value" in v else "",
             v.get("verdict", "baseline"), "" if v.get("more_needed") is None else f"~{v['more_needed']:,} more"]
            for v in found["variants"]]
    print(_table(rows, ["variant", "version", "n", found["metric"], "95% interval", "difference", "p-value",
                        "verdict", "to see it"]))
    if found["note"]:
        print(f"note: {found['note']}")
    return 0


def _notify_verbs(sub) -> None:
    """Who hears of failures, registrations, drift: notify add, list, remove, test."""
    from .notify import DEFAULT_EVENTS, EVENTS

    p = sub.add_parser("notify", help="webhooks and emails told of events (a run failed, a model registered, ...)")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = actions.add_parser("add", help="notify a webhook (Slack, Teams, any HTTP receiver) or an email address")
    a.add_argument("--webhook", metavar="URL", help="POSTed a JSON payload with a Slack-compatible `text`")
    a.add_argument("--email", metavar="ADDRESS")
    a.add_argument("--smtp", metavar="HOST:PORT", help="with --email: the mail server that takes it")
    a.add_argument("--events", metavar="E1,E2", help=f"of {', '.join(EVENTS)} (default: all but run.succeeded: "
                                                     f"{len(DEFAULT_EVENTS)} events)")
    _workspace_option(a)
    a = actions.add_parser("list", help="the notifications and what was sent lately")
    a.add_argument("--json", action="store_true")
    _workspace_option(a)
    for action, text in (("remove", "stop notifying one (by its id)"), ("test", "send one a test message now")):
        a = actions.add_parser(action, help=text)
        a.add_argument("id", type=int)
        _workspace_option(a)


def _notify(args: argparse.Namespace) -> int:
    from . import api

    if args.action == "add":
        events = [e.strip() for e in args.events.split(",") if e.strip()] if args.events else None
        added = api.add_notification(webhook=args.webhook, email=args.email, smtp=args.smtp, events=events,
                                     workspace=args.workspace)
        print(f"notification {added['id']}: {added['kind']} {added['target']} on {', '.join(added['events'])}")
    elif args.action == "list":
        found = api.notifications(workspace=args.workspace)
        if args.json:
            print(json.dumps(found, indent=1))
        elif not found["notifications"]:
            print("no notifications; add one with `jupyter-mlops notify add --webhook URL`")
        else:
            print(_table([[n["id"], n["kind"], n["target"] + (f" via {n['smtp']}" if n["smtp"] else ""),
                           ", ".join(n["events"])] for n in found["notifications"]],
                         ["id", "kind", "to", "events"]))
            if found["sent"]:
                print("\nlately")
                print(_table([[s["event"], s["notification_id"], s["status"], s["attempts"], s["error"] or ""]
                              for s in found["sent"][:20]], ["event", "to id", "status", "attempts", "error"]))
    elif args.action == "remove":
        api.remove_notification(args.id, workspace=args.workspace)
        print(f"notification {args.id} removed")
    else:
        api.test_notification(args.id, workspace=args.workspace)
        print(f"notification {args.id}: the test message was delivered")
    return 0


def _parameters(pairs: list[list[str]]) -> dict[str, str]:
    from .errors import ParameterError

    out: dict[str, str] = {}
    for name, value in pairs:
        if name in out:
            raise ParameterError(f"parameter `{name}` is given twice; give it once (a sweep over values is "
                                 "`jupyter-mlops sweep`)")
        out[name] = value
    return out


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


def _progress(result: Any) -> None:
    if result.status == "pending":
        return
    if result.status == "running":
        print(f"  {result.name:<20} running", file=sys.stderr, flush=True)
        return
    line = f"  {result.name:<20} {STATUS_MARK.get(result.status, result.status):<9} {_duration(result.duration)}"
    if result.metrics:
        line += "  " + " ".join(f"{k}={v:.4g}" for k, v in result.metrics.items())
    if result.error and result.status == "failed":
        line += f"\n    {result.error}" + (f" (cell {result.cell})" if result.cell else "")
    print(line, file=sys.stderr, flush=True)


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths))] +
                     [fmt.format(*map(str, r)) for r in rows])


def _short(value: Any) -> str:
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return text if len(text) <= 24 else text[:21] + "..."


def _print_run(run: dict) -> None:
    print(f"run       {run['id']}  ({run['status']})")
    print(f"notebook  {run['notebook']}")
    print(f"started   {run['started']}   duration {_duration(run['duration'])}")
    if run["params"]:
        print("params    " + "  ".join(f"{k}={_short(v)}" for k, v in run["params"].items()))
    if run["metrics"]:
        print("metrics   " + "  ".join(f"{k}={v:.4g}" for k, v in run["metrics"].items()))
    if run["error"]:
        print(f"error     {run['error']}")
    rows = [[s["name"], s["kind"], s["status"], _duration(s["duration"]), s["output_notebook"] or "-"]
            for s in run["steps"]]
    print(_table(rows, ["step", "kind", "status", "duration", "output notebook"]))
    if run.get("data"):
        from .api import data_digest

        folder = os.path.dirname(run["notebook"])
        rows = [[os.path.relpath(d["path"], folder) if d["path"].startswith(folder + os.sep) else d["path"],
                 d["kind"], d["step"] or "--watch", "-" if d["size"] is None else _bytes(d["size"]), data_digest(d)]
                for d in run["data"]]
        print("\ndata read")
        print(_table(rows, ["path", "kind", "step", "size", "digest"]))
    checks = run.get("data_checks") or {}
    if checks.get("findings"):
        print(f"\ndata checks against run {checks['baseline']}:")
        for finding in checks["findings"]:
            print(f"  {finding['message']}")


def _bytes(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


def _print_runs(runs: list[dict]) -> None:
    if not runs:
        print("no runs yet; start one with `jupyter-mlops run NOTEBOOK`")
        return
    params = list(dict.fromkeys(k for r in runs for k in r["params"]))
    metrics = list(dict.fromkeys(k for r in runs for k in r["metrics"]))
    rows = [[r["id"], os.path.basename(r["notebook"]), r["status"], (r["started"] or "")[:19].replace("T", " "),
             _duration(r["duration"])] + [_short(r["params"].get(k, "")) for k in params] +
            [_short(r["metrics"].get(k, "")) for k in metrics] for r in runs]
    print(_table(rows, ["run", "notebook", "status", "started", "duration"] + params + metrics))


def _print_sweep(result: dict) -> None:
    trials, metric = result["trials"], result["metric"]
    if metric:
        sign = -1 if result["direction"] == "maximize" else 1
        trials = sorted(trials, key=lambda t: (metric not in t["metrics"], sign * t["metrics"].get(metric, 0)))
    best = result["best"]["id"] if result["best"] else None
    print(f"sweep {result['id']}: {len(trials)} trials, "
          f"{sum(t['status'] == 'succeeded' for t in trials)} succeeded"
          + (f"; shared steps (run once): {', '.join(result['shared_steps'])}" if result["shared_steps"] else ""))
    _print_runs([dict(t, id=("* " if t["id"] == best else "  ") + t["id"]) for t in trials])
    if best:
        b = result["best"]
        print(f"best ({result['direction']} {metric}): {b['id']}  {metric}={b['metrics'][metric]:.4g}  " +
              "  ".join(f"{k}={_short(v)}" for k, v in b["params"].items()))
    elif metric:
        print(f"no trial succeeded with a `{metric}` metric")


def _print_pipeline(pipeline) -> None:
    print(f"{pipeline.notebook}: {len(pipeline.steps)} steps, "
          f"{len(pipeline.parameters)} parameters, {len(pipeline.setup_cells)} setup cells")
    if pipeline.parameters:
        print("parameters: " + ", ".join(f"{n} ({p.type}) = {p.source}" for n, p in pipeline.parameters.items()))
    for step in pipeline.steps:
        cells = ",".join(str(c + 1) for c in step.cells)
        print(f"  {step.name} [{step.kind}] cells {cells}")
        for dep in step.depends_on:
            names = [n for n, p in step.inputs.items() if p == dep]
            print(f"    after {dep}" + (f": {', '.join(names)}" if names else " (explicit)"))
        if step.parameters:
            print(f"    parameters: {', '.join(step.parameters)}")
    for warning in pipeline.warnings:
        print(f"warning: {warning}", file=sys.stderr)


def _server_limits(args):
    from .errors import MlopsError
    from .serving.limits import ServerLimits

    try:
        return ServerLimits(max_body=args.max_body, header_timeout=args.header_timeout)
    except ValueError as exc:
        raise MlopsError(str(exc)) from None


def _log_limits(args):
    from .errors import MlopsError
    from .serving.monitor import LogLimits

    try:
        return LogLimits(max_bytes=args.log_max_bytes, keep=args.log_keep, max_request=args.log_max_request)
    except ValueError as exc:
        raise MlopsError(str(exc)) from None


def _backend(args: argparse.Namespace, verb: str) -> dict:
    """--backend and the chosen engine's settings from its flags, as the API's keywords; a flag of another
    engine is an error that names it."""
    from . import engines
    from .errors import MlopsError

    chosen = {o.name for o in engines.get(args.backend, verb).options_for(verb)}
    settings = {"backend": args.backend}
    for name in engines.names(verb):
        for option in engines.get(name, verb).options_for(verb):
            value = getattr(args, option.name, None)
            if option.shown and value not in (None, False):
                if option.name not in chosen:
                    raise MlopsError(f"{option.flag} is a setting of --backend {name}, not of --backend "
                                     f"{args.backend}: add --backend {name}, or leave {option.flag} out")
                settings[option.name] = value
    return settings


def _sweep_options(args: argparse.Namespace) -> dict:
    """How a sweep's points are made, from its flags (the command line and %mlops)."""
    return dict(samples=args.samples, seed=args.seed, search=args.search or ("random" if args.samples else "grid"),
                trials=args.trials, max_trials=args.max_trials)


def _given(**keywords: Any) -> dict:
    """The verb's own options the user set (a flag left out is not passed, so another engine can do without it)."""
    return {k: v for k, v in keywords.items() if v is not None and v is not False}


def _thresholds(pairs: list[str] | None) -> dict[str, str] | None:
    from .errors import MlopsError

    if not pairs:
        return None
    found = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise MlopsError(f"--data-threshold `{pair}`: write NAME=SHARE, e.g. null_increase=0.1")
        found[name.strip()] = value.strip()
    return found


def _trial(path: str) -> dict:
    """The parameters of this pod's trial: index $JOB_COMPLETION_INDEX of a JSON list (an exported sweep)."""
    from .errors import MlopsError

    index = os.environ.get("JOB_COMPLETION_INDEX", "")
    if not index.isdigit():
        raise MlopsError("--trial-of needs $JOB_COMPLETION_INDEX (set by an Indexed Job) to pick the trial")
    try:
        trials = json.loads(Path(path).read_text())
        return dict(trials[int(index)])
    except (OSError, ValueError, IndexError, TypeError, KeyError) as exc:
        raise MlopsError(f"--trial-of {path}: no trial {index} in it ({exc})") from None


def _schedule(args: argparse.Namespace) -> int:
    from . import schedule
    from .errors import MlopsError
    from .workspace import Workspace

    ws = Workspace.locate(args.workspace, getattr(args, "notebook", None))
    if args.command == "scheduler":
        scheduler = schedule.Scheduler(ws)
        if args.rollout:  # a Kubernetes rollout's controller pod: that rollout alone, once
            from .rollout import advance

            if not args.once or args.only:
                raise MlopsError("--rollout NAME goes with --once (and without --only): one pass of that rollout")
            for made in advance(ws, only=args.rollout):
                print(made["text"])
            return 0
        if args.once:
            for fired in scheduler.tick(wait=True, only=args.only):
                print(f"rollout of {fired['rollout']}: {fired['status']}: {fired['reason']}" if "rollout" in fired
                      else f"{fired['schedule']} {fired['tick']} {fired['status']}")
        else:
            print(f"scheduler on {ws.root}: a pass every {args.interval:g} s; Ctrl-C stops it", file=sys.stderr)
            scheduler.run_forever(args.interval)
        return 0
    from . import api

    if args.action == "add":
        added = api.add_schedule(args.notebook, args.name, args.cron, _parameters(args.parameter),
                                 timezone=args.timezone, workspace=ws.root, **_backend(args, "schedule"),
                                 **_given(missed=args.missed, retries=args.retries, backoff=args.backoff,
                                          timeout=args.timeout, on_data_change=args.on_data_change,
                                          every=args.every, watch_paths=args.watch, on_drift=args.on_drift,
                                          threshold=args.threshold, drift_window=args.drift_window,
                                          register=args.register, require=args.require,
                                          rollout=_schedule_rollout(args)))
        print("\n".join(added["lines"]))
    elif args.action == "list":
        rows = api.schedules(workspace=ws.root)
        if args.json:
            print(json.dumps(rows, indent=1))
        elif not rows:
            print("no schedules; add one with `jupyter-mlops schedule add NOTEBOOK --name N --cron \"0 3 * * *\"`")
        else:
            print(_table([[r["name"], r["status"], r["when"], r["timezone"], r["next_tick"] or "-",
                           os.path.basename(r["notebook"])] for r in rows],
                         ["schedule", "status", "when", "timezone", "next tick or check", "notebook"]))
            if not schedule.schedulers_alive(ws.store):
                print(f"warning: {schedule.NO_SCHEDULER}", file=sys.stderr)
    elif args.action in ("pause", "resume", "delete"):
        done = api.set_schedule(args.name, args.action, workspace=ws.root)
        print(f"schedule {args.name} {done['status']}" + (" (its runs stay in the store)"
                                                          if args.action == "delete" else ""))
    elif args.action == "run":
        done = api.fire_schedule(args.name, workspace=ws.root)
        print(f"{args.name}: run {done['run_id']} {done['status']}")
        return 0 if done["status"] == "succeeded" else 1
    elif args.action == "history":
        ticks = api.schedule_history(args.name, workspace=ws.root)
        if args.json:
            print(json.dumps(ticks, indent=1))
        else:
            print(_table([[t["tick"], t["status"], t["run_id"] or "-", t["attempts"],
                           "; ".join(x for x in (t.get("reason"), t["error"]) if x)]
                          for t in ticks], ["tick", "status", "run", "attempts", "why / error"]) if ticks
                  else f"schedule {args.name} has not fired yet")
    return 0


def _deploy(args: argparse.Namespace) -> int:
    from . import api, engines

    def started(done: dict) -> None:
        print("\n".join([f"{done['lines'][0]} (POST /v2/models/{args.name}/infer, POST /invocations, GET /metrics)",
                         *done["lines"][1:]]), file=sys.stderr, flush=True)

    if args.history_of is not None:
        return _deploy_history(args)
    # what a server on this machine needs, for the engines that start one (the others take none of it)
    here = engines.accepted(args.backend, "deploy", dict(limits=_server_limits(args), log_limits=_log_limits(args),
                                                         wait=True, on_start=started, workers=args.workers))
    done = api.deploy(args.name, canary=args.canary, weight=args.weight, shadow=args.shadow,
                      sticky_header=args.sticky_header, workspace=args.workspace, **_backend(args, "deploy"),
                      **_given(host=args.host, port=args.port), **rollout_options(args), **here)
    if done["status"] != "stopped":
        print("\n".join(done["lines"]))
    return 0


def _schedule_rollout(args: argparse.Namespace) -> dict | None:
    """schedule add's --rollout and its settings (None without it; a setting without it is refused)."""
    from .errors import MlopsError

    given = _given(steps=args.rollout_steps, interval=args.rollout_interval, min_requests=args.rollout_min_requests)
    if given and not args.rollout:
        raise MlopsError(f"--rollout-{next(iter(given)).replace('_', '-')} goes with --rollout")
    return (given or True) if args.rollout else None


def rollout_options(args: argparse.Namespace) -> dict:
    """deploy's progressive-delivery flags, those given (the CLI and %mlops)."""
    return _given(progressive=args.progressive or None, steps=args.steps, interval=args.interval,
                  min_requests=args.min_requests, max_error_increase=args.max_error_increase,
                  max_p99_ratio=args.max_p99_ratio)


def _deploy_history(args: argparse.Namespace) -> int:
    """`deploy history NAME`: each rollout, then its decisions with their reasons."""
    from . import api
    from .errors import MlopsError
    from .schedule import iso

    if args.name != "history":
        raise MlopsError(f"`deploy {args.name} {args.history_of}`: deploy takes one name; for the decisions of a "
                         f"progressive rollout write `deploy history {args.history_of}`")
    found = api.deploy_history(args.history_of, workspace=args.workspace)
    if not found:
        print(f"{args.history_of} has had no progressive rollout (deploy --canary V --progressive)")
        return 0
    for rollout in found:
        steps = ", ".join(f"{w:g}%" for w in rollout["steps"])
        print(f"rollout {rollout['id']}: canary version {rollout['canary']} against version "
              f"{rollout['primary_version']} ({steps}): {rollout['status']}, canary at {rollout['weight']:g}%"
              + (f"; {rollout['note']}" if rollout["note"] else ""))
        print(_table([[iso(d["at"]), d["action"], f"{d['weight']:g}%", d["reason"]] for d in rollout["decisions"]],
                     ["when", "decision", "canary weight", "why"]))
    return 0


def _undeploy(args: argparse.Namespace) -> int:
    from . import api

    print("\n".join(api.undeploy(args.name, workspace=args.workspace, **_backend(args, "undeploy"))["lines"]))
    return 0


def _serve(args: argparse.Namespace) -> int:
    """One registered version on this machine, in the foreground (no deployment: nothing routes or follows)."""
    from .serving.server import ServerRecipe, load
    from .serving.workers import serve_recipe
    from .workspace import Workspace

    ws = Workspace.locate(args.workspace)
    target = load(ws, args.model)

    def listening(url: str) -> None:
        workers = f", {args.workers} worker processes" if args.workers > 1 else ""
        print(f"serving {target.name} version {target.version} on {url} (POST /v2/models/{target.name}/infer, "
              f"POST /invocations, GET /metrics{workers})", file=sys.stderr, flush=True)

    recipe = ServerRecipe(str(ws.root), model=f"{target.name}:{target.version}", limits=_server_limits(args),
                          log_limits=_log_limits(args))
    serve_recipe(recipe, args.host, args.port, args.workers, on_listening=listening, target=target)
    return 0


# Modules jsonschema imports only to check string formats (iri, uri, date-time, color, duration, ...) that no
# notebook schema uses; nothing else here imports them. rfc3987_syntax alone built a grammar for 2.4 s.
_FORMAT_CHECKER_MODULES = ("rfc3987_syntax", "rfc3987", "rfc3986_validator", "rfc3339_validator", "fqdn",
                           "webcolors", "uri_template", "isoduration")
# Commands that execute notebooks in this process, saving them many times over.
_EXECUTING = {"run", "resume", "sweep", "scheduler"}


def _light_start(command: str | None) -> None:
    """What a command's start-up can skip, in this process only (a kernel or a notebook keeps everything):
    jsonschema's format checkers, and for a command that only reads a notebook or two, fastjsonschema, nbformat's
    default, which compiles the notebook schema to Python first (~50 ms, repaid only over many saves)."""
    if "jsonschema" not in sys.modules:
        for module in _FORMAT_CHECKER_MODULES:
            sys.modules.setdefault(module, None)  # None: its import fails, and jsonschema goes without it
    if command not in _EXECUTING:
        os.environ.setdefault("NBFORMAT_VALIDATOR", "jsonschema")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((word for word in argv if not word.startswith("-")), None)
    _light_start(command)
    parser = _parser(command=command)
    args = parser.parse_args(argv)
    if args.show_version:
        from ._version import __version__

        print(__version__)
        return 0
    if not args.command:
        parser.print_help()
        return 1
    from .errors import MlopsError

    try:
        return _dispatch(args)
    except MlopsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: the run is recorded as cancelled", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `| head` stopped reading: what it read is what was asked for
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's own flush at exit, silenced
        return 0


def _dispatch(args: argparse.Namespace) -> int:
    from .errors import MlopsError

    if getattr(args, "notebook", "") is None:
        raise MlopsError(f"give the notebook: jupyter-mlops {args.command} NOTEBOOK.ipynb")
    return COMMANDS[args.command](args)


def _validate(args: argparse.Namespace) -> int:
    from . import api

    pipeline = api.validate(args.notebook)
    if args.json:
        print(json.dumps(pipeline.to_dict(), indent=1, default=str))
    else:
        _print_pipeline(pipeline)
    return 0


def _compile(args: argparse.Namespace) -> int:
    from . import api

    path = api.compile_notebook(args.notebook, args.output)
    print(f"wrote {path} and {path.parent / 'steps'}/")
    return 0


def _run_or_resume(args: argparse.Namespace) -> int:
    from . import api

    if args.parallel is not None and args.parallel < 1:
        from .errors import MlopsError

        raise MlopsError(f"--parallel must be at least 1, got {args.parallel}")
    if args.command == "run":
        parameters = _parameters(args.parameter)
        if args.trial_of:
            parameters.update(_trial(args.trial_of))
        if args.run_id_prefix:
            args.run_id = f"{args.run_id_prefix}-{os.environ.get('JOB_COMPLETION_INDEX', '0')}"
        result = api.run(args.notebook, parameters, run_id=args.run_id, workspace=args.workspace,
                         on_update=_progress, on_log=lambda line: print(f"  {args.backend}| {line}", file=sys.stderr),
                         **_backend(args, "run"), **_given(max_parallel=args.parallel, timeout=args.timeout,
                                                           fresh_kernels=args.fresh_kernels, watch_paths=args.watch,
                                                           data_checks=args.data_checks,
                                                           data_thresholds=_thresholds(args.data_threshold)))
        if args.publish:
            from .engines.kubernetes import publish
            from .workspace import Workspace

            publish(Workspace.locate(args.workspace, args.notebook), result)
    else:
        result = api.resume(args.run_id, workspace=args.workspace, max_parallel=args.parallel,
                            timeout=args.timeout, fresh_kernels=args.fresh_kernels, on_update=_progress)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(result["id"])
        if result["error"]:
            print(f"error: {result['error']}", file=sys.stderr)
    return 0 if result["status"] == "succeeded" else 1


def _sweep(args: argparse.Namespace) -> int:
    from . import api

    space = _parameters(args.parameter)
    done: list[dict] = []
    total = [0]

    def on_trial(run: dict) -> None:
        done.append(run)
        metrics = "  ".join(f"{k}={v:.4g}" for k, v in run["metrics"].items())
        params = "  ".join(f"{k}={_short(run['params'][k])}" for k in space if k in run["params"])
        print(f"[{len(done)}/{total[0] or '?'}] {run['id']}  {run['status']:<9} {params}  {metrics}  "
              f"{_duration(run['duration'])}", file=sys.stderr, flush=True)

    options = _sweep_options(args)
    total[0] = api.planned_trials(args.notebook, space, **options)
    result = api.sweep(args.notebook, space, parallel=args.parallel, maximize=args.maximize,
                       minimize=args.minimize, workspace=args.workspace, on_trial=on_trial, **options,
                       **_backend(args, "sweep"), **_given(timeout=args.timeout, fresh_kernels=args.fresh_kernels))
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        _print_sweep(result)
    return 0 if result["status"] == "succeeded" else 1


def _runs(args: argparse.Namespace) -> int:
    from . import api

    if args.plot is not None:
        print(json.dumps(api.runs_chart(args.plot or None, filter=args.filter or "", limit=args.limit or 500,
                                        workspace=args.workspace), indent=1))
        return 0
    if args.filter is not None or args.sort or args.ascending:  # the store filters and sorts; one page
        page = api.run_page(workspace=args.workspace, filter=args.filter or "", sort=args.sort or "started",
                            descending=not args.ascending, limit=args.limit or 1000, sweep_id=args.sweep)
        if args.json:
            print(json.dumps(page["runs"], indent=1))
        elif page["runs"]:
            _print_runs(page["runs"])
            print(f"{len(page['runs'])} of {page['total']} matching runs")
        else:
            print(f"no run matches `{args.filter}`" if args.filter else "no runs yet")
        return 0
    if not args.json:  # the table has no steps column: they are not read
        _print_runs(api.list_runs(workspace=args.workspace, limit=args.limit, sweep_id=args.sweep, steps=False))
    elif args.limit:
        print(json.dumps(api.list_runs(workspace=args.workspace, limit=args.limit, sweep_id=args.sweep), indent=1))
    else:  # printed as it is read, a page at a time: the first runs appear at once, memory stays flat
        _print_json_list(api.iter_runs(workspace=args.workspace, sweep_id=args.sweep))
    return 0


def _print_json_list(items) -> None:
    """The same text as json.dumps(list(items), indent=1), written item by item."""
    import textwrap

    out, first = sys.stdout, True
    out.write("[")
    for item in items:
        out.write(("\n" if first else ",\n") + textwrap.indent(json.dumps(item, indent=1), " "))
        first = False
    out.write("]\n" if first else "\n]\n")


def _register(args: argparse.Namespace) -> int:
    from . import api
    from .registry import GateFailed

    try:
        version = api.register(args.run_id, args.name, metric=args.metric, maximize=not args.minimize,
                               require=args.require, sweep_id=args.sweep,
                               notebook=args.best_of if args.best_of != "all" else None, workspace=args.workspace,
                               max_age=args.max_age)
    except GateFailed as exc:
        print(f"gate failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(version, indent=1, default=str))
    else:
        metrics = "  ".join(f"{k}={v:.4g}" for k, v in version["metrics"].items())
        print(f"registered {version['name']} version {version['version']} from run {version['run_id']}  "
              f"{metrics}\n  package {version['package']}")
        if version.get("warning"):
            print(f"warning: {version['warning']}", file=sys.stderr)
    return 0


def _models(args: argparse.Namespace) -> int:
    from . import api

    found = api.models(workspace=args.workspace)
    if args.json:
        print(json.dumps(found, indent=1))
    elif not found:
        print("no models yet; register one with `jupyter-mlops register RUN --name NAME`")
    else:
        rows = []
        for model in found:
            by_version: dict[int, list[str]] = {}
            for alias, version in model["aliases"].items():
                by_version.setdefault(version, []).append(alias)
            for v in model["versions"]:
                rows.append([model["name"], v["version"], ",".join(by_version.get(v["version"], [])) or "-",
                             v["run_id"], (v["created"] or "")[:19].replace("T", " "),
                             "  ".join(f"{k}={x:.4g}" for k, x in v["metrics"].items())])
        print(_table(rows, ["model", "version", "aliases", "run", "created", "metrics"]))
    return 0


def _alias(args: argparse.Namespace) -> int:
    from . import api

    if args.command == "promote":
        done = api.promote(args.name, args.model_version, alias=args.alias, workspace=args.workspace)
    else:
        done = api.rollback(args.name, alias=args.alias, workspace=args.workspace)
    was = f" (was {done['previous']})" if done["previous"] is not None else ""
    print(f"{done['name']}@{done['alias']} -> version {done['version']}{was}")
    return 0


def _build(args: argparse.Namespace) -> int:
    import tempfile

    from . import image
    from .errors import MlopsError
    from .kube.manifests import resource_name

    if args.context_only and not args.output:
        raise MlopsError("--context-only writes the build context to a folder: give it with -o DIR")
    tag = args.tag or f"{resource_name(Path(args.notebook).stem)}:latest"
    if not args.context_only:
        image.find_builder(args.builder)  # no builder: say so before the context is written
    with tempfile.TemporaryDirectory(prefix="mlops-build-") as scratch:
        context = image.build_context(args.notebook, args.output or Path(scratch) / "context",
                                      base_image=args.base_image, wheel=args.wheel, extra=args.extra)
        if args.context_only:
            print(f"wrote the build context to {context}: docker build -t {tag} {context}")
            return 0
        built = image.build(context, tag, builder=args.builder, builder_args=args.builder_arg)
    size = f"{built['size'] / 1e6:.0f} MB" if built["size"] else "size unknown"
    print(f"built {built['tag']} with {built['builder']}: {built['id'][:19]}, {size}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .kube.export import export
    from .kube.manifests import Target

    if args.format == "kfp":
        return _export_kfp(args)
    target = Target(args.image, args.namespace, args.cpu, args.memory,
                    None if args.pvc == "none" else args.pvc, args.artifacts, args.artifacts_secret,
                    args.store_secret)
    space = _parameters(args.parameter)
    written = export(args.notebook, args.output, target, parameters={} if args.sweep else space,
                     schedule=args.schedule, timezone=args.timezone, sweep=space if args.sweep else None,
                     samples=args.samples, parallel=args.parallel, model=args.model, canary=args.canary,
                     weight=args.weight, shadow=args.shadow, gateway=args.gateway, workspace=args.workspace)
    for path in written:
        print(path)
    return 0


def _export_kfp(args: argparse.Namespace) -> int:
    """`export kfp`: the pipeline's YAML, written by the kfp SDK (kube/kfp.py)."""
    from .errors import MlopsError
    from .kube.kfp import export

    given = [flag for flag, value in (("--schedule", args.schedule), ("--model", args.model),
                                      ("--artifacts-secret", args.artifacts_secret),
                                      ("--store-secret", args.store_secret)) if value]
    if given:
        raise MlopsError(f"{given[0]} is not part of `export kfp` (yet): it writes one pipeline of the notebook's "
                         "steps (a sweep's trials with --sweep); leave it out")
    space = _parameters(args.parameter)
    print(export(args.notebook, args.output, args.image, {} if args.sweep else space, args.artifacts, args.cpu,
                 args.memory, sweep=space if args.sweep else None, samples=args.samples, parallel=args.parallel))
    return 0


def _monitor(args: argparse.Namespace) -> int:
    from . import api

    if args.plot:
        chart = api.monitor_chart if args.plot == "drift" else api.traffic_chart
        print(json.dumps(chart(args.name, window=args.window if args.plot == "drift" else max(args.window, 5000),
                               workspace=args.workspace), indent=1))
        return 0
    found = api.monitor(args.name, window=args.window, workspace=args.workspace)
    if args.json:
        print(json.dumps(found, indent=1))
        return 0
    print(f"{args.name} version {found['version']}: {found['requests']} logged requests, window of "
          f"{found['window_rows']} rows against {found['reference_rows']} training rows")
    rows = [[n, f["test"], f"{f['statistic']:.3g}", f"{f['p_value']:.3g}",
             "-" if f["psi"] is None else f"{f['psi']:.3f}", "yes" if f["drifted"] else "no"]
            for n, f in found["features"].items()]  # drifted first, then by PSI
    if rows:
        print(_table(rows[: args.top], ["feature", "test", "statistic", "p-value", "psi", "drifted"]))
        if len(rows) > args.top:
            print(f"{args.top} of {len(rows)} features shown, drifted first, then by PSI (--top N for more)")
    print(f"rule: {found['drift_rule']}")
    print(f"drifted features: {len(found['drifted_features'])}; outliers (max |z| > 6): {found['outliers']}")
    print(_age_line(found["age"]))
    for o in found["outcomes"]:
        scores = "  ".join(f"{k.replace('_', ' ')} {o[k]:.4g}" for k in ("accuracy", "mean_reward") if o[k] is not None)
        print(f"feedback: {o['variant']} v{o['version']}: {o['n']} outcomes  {scores}")
    shadow = found["shadow"]
    if shadow and shadow["rows"]:
        print(f"shadow: {shadow['rows']} rows mirrored, agreement {shadow['agreement']:.1%}, latency delta "
              f"{shadow['mean_latency_delta_ms']:+.3f} ms")
    return 0


def _age_line(age: dict) -> str:
    def days(seconds: float | None) -> str:
        return "unknown" if seconds is None else f"{seconds / 86400:.1f} days"

    limit = f", limit {days(age['max_age_seconds'])}" if age["max_age_seconds"] else " (no --max-age)"
    return (f"age: model {days(age['model_age_seconds'])}, its training data {days(age['data_age_seconds'])}{limit}"
            + ("; STALE: retrain it" if age["stale"] else ""))


def _compare(args: argparse.Namespace) -> int:
    from . import api

    if args.plot:
        print(json.dumps(api.compare_chart(args.run_ids, workspace=args.workspace), indent=1))
        return 0
    table = api.compare(args.run_ids, workspace=args.workspace, all_rows=args.all)
    if args.json:
        print(table.to_json(orient="columns", indent=1, default_handler=str))
    else:
        rows = [[name] + [_short(v) for v in row] for name, row in zip(table.index, table.values.tolist())]
        print(_table(rows, [""] + list(table.columns)) if rows else "the runs agree on every parameter and metric")
    return 0


def _baseline(args: argparse.Namespace) -> int:
    from . import api

    if args.run_id:
        chosen = api.set_baseline(args.notebook, args.run_id, workspace=args.workspace)
        print(f"{os.path.basename(args.notebook)}: data checks now compare with run {chosen}")
    else:
        chosen = api.baseline(args.notebook, workspace=args.workspace)
        print(f"{os.path.basename(args.notebook)}: data checks compare with run {chosen}" if chosen else
              f"{os.path.basename(args.notebook)} has no succeeded run yet: its first one becomes the baseline")
    return 0


def _show(args: argparse.Namespace) -> int:
    from . import api

    run = api.get_run(args.run_id, workspace=args.workspace)
    print(json.dumps(run, indent=1)) if args.json else _print_run(run)
    return 0


# each verb of the command line: a function that parses nothing (argparse did), calls the API and prints
COMMANDS = {"validate": _validate, "compile": _compile, "run": _run_or_resume, "resume": _run_or_resume,
            "sweep": _sweep, "runs": _runs, "show": _show, "baseline": _baseline, "compare": _compare,
            "register": _register,
            "models": _models, "promote": _alias, "rollback": _alias, "serve": _serve, "deploy": _deploy,
            "undeploy": _undeploy, "monitor": _monitor, "schedule": _schedule, "scheduler": _schedule,
            "build": _build, "export": _export, "notify": _notify,
            "feedback": _feedback, "abtest": _abtest}

if __name__ == "__main__":
    sys.exit(main())
