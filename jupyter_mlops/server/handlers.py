"""The REST API under `/mlops/api/` that the JupyterLab panel speaks; each handler is a thin layer over `api.py`.

Every handler is a Jupyter `APIHandler` behind `@web.authenticated`: the server's token or login, and its XSRF
check on every non-GET request made with a cookie. Notebook paths come from the browser relative to the server's
root dir and are resolved inside it (a `../` escape is answered 403). Anything slower than a store read runs on a
thread (`run_blocking`) or as a background job, never on the event loop.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.ioloop import IOLoop

from ..errors import MlopsError, NotebookError, StoreError
from ..names import check_name, check_path_text, check_run_id
from ..owners import STOP_WITH, process_owner
from ..search_space import MAX_TRIALS
from ..workspace import new_run_id


class MlopsRequests:
    """Shared plumbing of our handlers: the workspace, path checks, JSON bodies, MlopsError -> 400 naming it."""

    @property
    def mlops(self):
        return self.settings["jupyter_mlops"]

    @property
    def workspace(self):
        return self.mlops.workspace

    def notebook_path(self, relative: Any, *, must_exist: bool = True) -> Path:
        """A notebook path from the browser, resolved inside the server's root dir."""
        if not isinstance(relative, str) or not relative.strip():
            raise web.HTTPError(400, "`path` must be the notebook's path relative to the server's root, "
                                     "e.g. \"folder/model.ipynb\"")
        with self.user_errors():
            check_path_text(relative)
        root = self.mlops.root_dir
        path = (root / relative.lstrip("/")).resolve()
        if not path.is_relative_to(root):
            raise web.HTTPError(403, f"`{relative}` is outside the server's root dir")
        if path.suffix != ".ipynb":
            raise web.HTTPError(400, f"`{relative}` is not a notebook (.ipynb)")
        try:
            exists = path.is_file()
        except OSError as exc:  # a component over the file system's name limit, and the like
            raise web.HTTPError(400, f"`path`: {exc.strerror}") from None
        if must_exist and not exists:
            raise web.HTTPError(404, f"no notebook at `{relative}`")
        return path

    def body(self) -> dict:
        try:
            data = json.loads(self.request.body or b"{}")
        except ValueError as exc:
            raise web.HTTPError(400, f"the request body is not JSON: {exc}") from None
        except RecursionError:
            raise web.HTTPError(400, "the request body's JSON is nested too deeply") from None
        if not isinstance(data, dict):
            raise web.HTTPError(400, "the request body must be a JSON object")
        return data

    def reply(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data, default=str))

    async def run_blocking(self, fn, *args, **kwargs):
        """Run a store read or an API call on a thread; a user mistake becomes a 400 naming it."""
        with self.user_errors():
            return await IOLoop.current().run_in_executor(None, lambda: fn(*args, **kwargs))

    @contextlib.contextmanager
    def user_errors(self):
        """A user mistake (MlopsError, NotebookError) raised inside becomes a 400 naming it."""
        try:
            yield
        except NotebookError as exc:
            self.problems = [_problem(p) for p in exc.problems]
            raise web.HTTPError(400, str(exc)) from None
        except StoreError as exc:  # not the request's fault: the store is damaged, read-only, full or away
            raise web.HTTPError(503, str(exc)) from None
        except MlopsError as exc:
            raise web.HTTPError(400, str(exc)) from None

    def engine_choice(self, data: dict, verb: str) -> dict:
        """`backend` (an engine's name, default local) and its `settings` from the body, checked against the
        engine registry (a setting the engine does not take, or a missing --image, is a 400 naming it); returns
        them as the API's keywords."""
        from .. import engines

        backend, given = data.get("backend") or "local", data.get("settings") or {}
        if not isinstance(backend, str) or not isinstance(given, dict):
            raise web.HTTPError(400, "`backend` must be an engine's name and `settings` an object of its settings")
        with self.user_errors():
            options = {o.name: o for o in engines.get(backend, verb).options_for(verb) if o.shown}
            unknown = sorted(set(given) - set(options))
            if unknown:
                raise MlopsError(f"the {backend} engine takes no setting {', '.join(map(repr, unknown))}; it takes "
                                 f"{', '.join(options) or 'none'}")
            settings = {}
            for name, value in given.items():
                if value not in (None, ""):
                    try:
                        kind = options[name].type
                        settings[name] = str(value).lower() in ("true", "1", "yes", "on") if kind is bool \
                            else kind(value)
                    except (TypeError, ValueError):
                        raise MlopsError(f"setting `{name}` of the {backend} engine: {value!r} is not a "
                                         f"{options[name].type.__name__}") from None
            engines.create(backend, verb, self.workspace.root, settings)  # its own checks (the kubernetes image)
        return {"backend": backend, **settings}

    def relative(self, path: str | None) -> str | None:
        """A path as the browser names it (relative to the root dir), or None when it lies outside."""
        if not path:
            return None
        resolved = Path(path).resolve()
        return resolved.relative_to(self.mlops.root_dir).as_posix() \
            if resolved.is_relative_to(self.mlops.root_dir) else None


class MlopsHandler(MlopsRequests, APIHandler):
    """A JSON endpoint: errors answer {"message": ..., "problems": [...]}."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = exc.log_message if isinstance(exc, web.HTTPError) and exc.log_message else self._reason
        body = {"message": message}
        if getattr(self, "problems", None):
            body["problems"] = self.problems
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))


def _problem(p) -> dict:
    return {"cell": p.cell, "message": p.message, "fix": p.fix, "snippet": p.snippet}


def _number(data: dict, name: str, kind=float, default: Any = None, minimum: float | None = None):
    value = data.get(name, default)
    if value is None or value == "":
        return default
    try:
        value = kind(value)
    except (TypeError, ValueError):
        raise web.HTTPError(400, f"`{name}` must be a {'whole ' if kind is int else ''}number, got {value!r}")
    if minimum is not None and value < minimum:
        raise web.HTTPError(400, f"`{name}` must be at least {minimum:g}, got {value}")
    return value


def _parameters(data: dict, name: str = "parameters") -> dict:
    values = data.get(name) or {}
    if not isinstance(values, dict):
        raise web.HTTPError(400, f"`{name}` must be an object of parameter names to values")
    return values


# -- notebooks ----------------------------------------------------------------------------------------------------
class ValidateHandler(MlopsHandler):
    @web.authenticated
    async def post(self):
        """The pipeline of a notebook: of its saved file, or of `notebook` (the unsaved content in the editor)."""
        data = self.body()
        path = self.notebook_path(data.get("path"), must_exist="notebook" not in data)
        content = data.get("notebook")

        def validate():
            import nbformat

            from ..pipeline import build_pipeline

            nb = nbformat.from_dict(content) if content is not None else None
            if nb is not None:
                try:
                    nbformat.validate(nb, version=4)
                except (nbformat.ValidationError, RecursionError) as exc:
                    message = str(exc).splitlines()[0] if isinstance(exc, nbformat.ValidationError) else \
                        "it is nested too deeply"
                    raise MlopsError(f"`notebook` is not a notebook (nbformat 4): {message}") from None
            try:
                pipeline = build_pipeline(path, nb)
            except NotebookError as exc:
                return {"ok": False, "problems": [_problem(p) for p in exc.problems]}
            # the metrics its earlier runs logged too: names a `log_metrics(**values)` hides from the code
            seen = self.workspace.store.metric_names(str(path))
            return {"ok": True, "pipeline": pipeline.to_dict(), "warnings": list(pipeline.warnings),
                    "seen_metrics": seen}

        if content is not None and not isinstance(content, dict):
            raise web.HTTPError(400, "`notebook` must be the notebook's JSON (nbformat 4)")
        self.reply(await self.run_blocking(validate))


# -- runs -----------------------------------------------------------------------------------------------------------
class RunsHandler(MlopsHandler):
    @web.authenticated
    async def get(self):
        """A page of the runs: `filter` (`accuracy>0.9 status=failed digits`), `sort` (a field, params.NAME or
        metrics.NAME), `order` (desc, asc), `offset`, `limit` (default 100), `sweep`, `notebook` (a path: only its
        runs); each run without its steps but with how many are done. The store filters, sorts and pages: a poll
        costs a page, not the store."""
        from .. import api

        order = self.get_argument("order", "desc")
        if order not in ("desc", "asc"):
            raise web.HTTPError(400, f"`order` is desc or asc, not {order!r}")
        notebook = self.get_argument("notebook", None)
        page = await self.run_blocking(
            api.run_page, workspace=self.workspace.root, filter=self.get_argument("filter", ""),
            sort=self.get_argument("sort", "started"), descending=order == "desc",
            offset=_number({"offset": self.get_argument("offset", "0")}, "offset", int, minimum=0),
            limit=_number({"limit": self.get_argument("limit", "100")}, "limit", int, minimum=1),
            sweep_id=self.get_argument("sweep", None),
            notebook=self.notebook_path(notebook, must_exist=False) if notebook else None)
        for run in page["runs"]:
            run["path"] = self.relative(run["notebook"])
        self.reply({**page, "jobs": [j.to_dict() for j in self.mlops.jobs.running()]})

    @web.authenticated
    async def post(self):
        """Start a run of the notebook at `path` with `parameters`; answers 202 with the run id at once."""
        from .. import api
        from ..parameters import coerce_parameters

        data = self.body()
        path = self.notebook_path(data.get("path"))
        parameters = _parameters(data)
        pipeline = await self.run_blocking(api.validate, path)  # bad tags: 400 with every problem, nothing runs
        await self.run_blocking(coerce_parameters, pipeline.parameters, dict(parameters))
        engine = self.engine_choice(data, "run")
        run_id = new_run_id()
        job = self.mlops.jobs.start("run", lambda: api.run(path, parameters, workspace=self.workspace.root,
                                                           run_id=run_id, **engine), run_id=run_id)
        self.reply({"job": job.id, "run_id": run_id}, 202)


class RunHandler(MlopsHandler):
    @web.authenticated
    async def get(self, run_id: str):
        from .. import api

        run = await self.run_blocking(api.get_run, run_id, workspace=self.workspace.root)
        run["path"] = self.relative(run["notebook"])
        for read in run["data"]:  # the browser's names for what lies inside the root
            read["path"] = self.relative(read["path"]) or read["path"] if read["kind"] != "url" else read["path"]
        for step in run["steps"]:
            step["has_notebook"] = bool(step["output_notebook"] and Path(step["output_notebook"]).is_file())
        self.reply(run)


class ResumeHandler(MlopsHandler):
    @web.authenticated
    async def post(self, run_id: str):
        """Resume a failed or cancelled run from its failed steps (the notebook read again, so a fix is picked up);
        answers 202 with the job at once, or 400 saying why it cannot be resumed."""
        from .. import api

        with self.user_errors():
            check_run_id(run_id)
        await self.run_blocking(api.check_resumable, run_id, workspace=self.workspace.root)
        job = self.mlops.jobs.start("run", lambda: api.resume(run_id, workspace=self.workspace.root),
                                    run_id=run_id)
        self.reply({"job": job.id, "run_id": run_id}, 202)


class StepNotebookHandler(MlopsRequests, JupyterHandler):
    @web.authenticated
    async def get(self, run_id: str, step: str):
        """A run's executed step notebook, rendered as HTML (`?format=ipynb` for its JSON). The HTML holds the
        notebook's outputs, which may hold any HTML: a CSP sandbox keeps their scripts from running on the
        server's origin (where they could act with the user's session)."""
        from .. import api

        run = await self.run_blocking(api.get_run, run_id, workspace=self.workspace.root)
        found = next((s for s in run["steps"] if s["name"] == step), None)
        if found is None:
            raise web.HTTPError(404, f"run {run_id} has no step `{step}`")
        output = Path(found["output_notebook"] or "")
        if not found["output_notebook"] or not output.is_file():
            raise web.HTTPError(404, f"step `{step}` of run {run_id} has no output notebook (status "
                                     f"{found['status']})")
        output = output.resolve()
        if not (output.is_relative_to(self.workspace.root) or output.is_relative_to(self.mlops.root_dir)):
            raise web.HTTPError(403, "the output notebook lies outside the server's root and the workspace")
        if self.get_argument("format", "html") == "ipynb":
            self.set_header("Content-Type", "application/x-ipynb+json")
            self.finish(output.read_bytes())
            return

        def render() -> str:
            from nbconvert import HTMLExporter

            html, _ = HTMLExporter(template_name="lab").from_filename(str(output))
            return html

        html = await self.run_blocking(render)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Content-Security-Policy", "sandbox; default-src 'none'; img-src data:; "
                        "style-src 'unsafe-inline'; font-src data:; frame-ancestors 'self'")
        self.finish(html)


class JobHandler(MlopsHandler):
    @web.authenticated
    def get(self, job_id: str):
        job = self.mlops.jobs.get(job_id)
        if job is None:
            raise web.HTTPError(404, f"no job `{job_id}` (finished jobs are forgotten after a while)")
        self.reply(job.to_dict())


# -- sweeps ---------------------------------------------------------------------------------------------------------
class SweepsHandler(MlopsHandler):
    @web.authenticated
    async def post(self):
        """Start a sweep: `space` maps parameters to lists or range specs (as on the command line)."""
        from .. import api

        data = self.body()
        path = self.notebook_path(data.get("path"))
        space = _parameters(data, "space")
        direction = data.get("direction") or "maximize"
        if direction not in ("maximize", "minimize"):
            raise web.HTTPError(400, f"`direction` must be maximize or minimize, got {direction!r}")
        metric = data.get("metric") or None
        options = dict(samples=_number(data, "samples", int, minimum=1), seed=_number(data, "seed", int, 0),
                       search=data.get("search") or ("random" if data.get("samples") else "grid"),
                       trials=_number(data, "trials", int, minimum=1),
                       max_trials=_number(data, "max_trials", int, MAX_TRIALS, minimum=1))
        parallel = _number(data, "parallel", int, 2, minimum=1)
        kwargs = dict(parallel=parallel, **options, **({direction: metric} if metric else {}))
        engine = self.engine_choice(data, "sweep")
        # every check a sweep makes, before any kernel starts: mistakes come back as a 400, not as a failed job
        await self.run_blocking(api.plan_sweep, path, space, **kwargs)
        total = await self.run_blocking(api.planned_trials, path, space, **options)
        job = self.mlops.jobs.start("sweep", lambda: api.sweep(path, space, workspace=self.workspace.root,
                                                               **kwargs, **engine), trials=total)
        self.reply({"job": job.id, "trials": total}, 202)


# -- models ---------------------------------------------------------------------------------------------------------
class ModelsHandler(MlopsHandler):
    @web.authenticated
    async def get(self):
        from .. import api

        self.reply({"models": await self.run_blocking(api.models, workspace=self.workspace.root)})

    @web.authenticated
    async def post(self):
        """Register `run` (an id or "best" by `metric`, among the runs of the notebook at `path` when given) as the
        next version of `name`, behind `require` gates."""
        from .. import api
        from ..registry import GateFailed

        data = self.body()
        require = data.get("require") or []
        if not isinstance(require, list) or not all(isinstance(g, str) for g in require):
            raise web.HTTPError(400, "`require` must be a list of gates like \"accuracy>=0.9\"")
        for field in ("run", "name"):
            if not isinstance(data.get(field), str) or not data[field].strip():
                raise web.HTTPError(400, f"`{field}` is required" + (": a run id, or \"best\" with `metric`"
                                                                     if field == "run" else ": the model's name"))
        notebook = self.notebook_path(data["path"], must_exist=False) if data.get("path") else None
        try:
            version = await self.run_blocking(
                api.register, data["run"].strip(), data["name"].strip(), metric=data.get("metric") or None,
                maximize=data.get("direction", "maximize") != "minimize", require=require,
                sweep_id=data.get("sweep") or None, notebook=notebook, workspace=self.workspace.root)
        except GateFailed as exc:  # not raised through run_blocking's MlopsError branch: it names the gate
            raise web.HTTPError(400, f"gate failed: {exc}") from None
        self.reply(version, 201)


class AliasHandler(MlopsHandler):
    @web.authenticated
    async def post(self, name: str, action: str):
        """`promote` (body: version, alias) or `rollback` (body: alias) a model's alias."""
        from .. import api

        data = self.body()
        alias = data.get("alias") or "production"
        if action == "promote":
            version = _number(data, "version", int, minimum=1)
            if version is None:
                raise web.HTTPError(400, "`version` is required: the model version the alias should point at")
            done = await self.run_blocking(api.promote, name, version, alias=alias, workspace=self.workspace.root)
        else:
            done = await self.run_blocking(api.rollback, name, alias=alias, workspace=self.workspace.root)
        self.reply(done)


# -- deployments ----------------------------------------------------------------------------------------------------
class DeploymentsHandler(MlopsHandler):
    @web.authenticated
    async def get(self):
        from .. import api

        self.reply({"deployments": await self.run_blocking(api.deployments, workspace=self.workspace.root)})

    @web.authenticated
    async def post(self):
        """Start the deployment's server (a `jupyter-mlops deploy` process of its own, so serving never shares the
        Jupyter server's event loop), or update the running one; answers once it is up or has said why not. The
        server stops when this Jupyter server does, unless `keep` is true."""
        data = self.body()
        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            raise web.HTTPError(400, "`name` is required: the registered model to deploy")
        name = name.strip()
        with self.user_errors():  # before its log folder is made or its process started
            check_name(name)
        port = _number(data, "port", int, 8080, minimum=1)
        if port > 65535:
            raise web.HTTPError(400, f"`port` must be at most 65535, got {port}")
        command = [sys.executable, "-m", "jupyter_mlops.cli", "deploy", "--port", str(port),
                   "--workspace", str(self.workspace.root)]
        for field, flag in (("canary", "--canary"), ("shadow", "--shadow")):
            value = _number(data, field, int, minimum=1)
            if value is not None:
                command += [flag, str(value)]
        if data.get("canary") not in (None, ""):
            command += ["--weight", str(_number(data, "weight", float, 10.0, minimum=0))]
        command += _progressive_flags(data.get("progressive"))
        if data.get("sticky_header"):
            header = str(data["sticky_header"])
            if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", header):
                raise web.HTTPError(400, f"`sticky_header` must be an HTTP header name (letters, digits, `-`), got "
                                         f"{header[:40]!r}")
            command += [f"--sticky-header={header}"]
        command += ["--", name]  # never read as an option, whatever it is
        if data.get("keep") not in (None, True, False):
            raise web.HTTPError(400, f"`keep` must be true or false, got {data['keep']!r}")
        stop_with = {} if data.get("keep") else {STOP_WITH: process_owner()}
        self.reply(await self.run_blocking(_start_deployment, self.workspace, name, command, stop_with))


class DeploymentHandler(MlopsHandler):
    @web.authenticated
    async def get(self, name: str):
        """The deployment's A-B test on the outcomes joined to its answers (`abtest`); a 400 saying why when
        there are none yet."""
        from .. import api

        with self.user_errors():
            check_name(name)
        self.reply(await self.run_blocking(api.abtest, name, workspace=self.workspace.root))

    @web.authenticated
    async def delete(self, name: str):
        """Stop the deployment's server and forget the deployment (its request logs stay)."""
        from .. import api

        with self.user_errors():
            check_name(name)
        self.reply(await self.run_blocking(api.undeploy, name, workspace=self.workspace.root))


def _progressive_flags(given: Any) -> list[str]:
    """deploy's flags for `progressive` ({steps, interval, min_requests} or null), each checked here: a bad one is a
    400 naming it, before a process starts."""
    from .. import rollout

    if given in (None, False):
        return []
    if not isinstance(given, dict):
        raise web.HTTPError(400, "`progressive` must be an object {steps, interval, min_requests} or null")
    steps = given.get("steps") or None
    interval = given.get("interval") or None
    try:
        rollout.check_steps(steps)
        rollout.settings(interval=interval, min_requests=_number(given, "min_requests", int, None, minimum=1))
    except MlopsError as exc:
        raise web.HTTPError(400, str(exc)) from None
    flags = ["--progressive"] + (["--steps", str(steps)] if steps else []) + (["--interval", str(interval)]
                                                                            if interval else [])
    if given.get("min_requests") not in (None, ""):
        flags += ["--min-requests", str(int(given["min_requests"]))]
    return flags


def _start_deployment(ws, name: str, command: list[str], env: dict, wait: float = 60.0) -> dict:
    from ..serving.server import is_up

    log = ws.root / "logs" / name / "server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    updating = is_up(ws.store.get_deployment(name))  # then the new process only updates the spec, and exits
    start = log.stat().st_size if log.exists() else 0  # before the process starts: its first words are ours to show
    with open(log, "ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1", **env})
    deadline = time.time() + wait
    while time.time() < deadline:
        code = process.poll()
        if code is not None:
            said = log.read_text(errors="replace")[start:].strip() or f"exit code {code}"
            if code == 0:  # an update of the server already running
                return {"name": name, "status": "updated", "message": said, **_deployment_row(ws, name)}
            raise MlopsError(said.removeprefix("error: "))
        if not updating and is_up(ws.store.get_deployment(name)):
            return {"name": name, "status": "started", **_deployment_row(ws, name)}
        time.sleep(0.2)
    raise MlopsError(f"the server for {name} did not answer within {wait:g} s; see {log}")


def _deployment_row(ws, name: str) -> dict:
    row = ws.store.get_deployment(name) or {}
    return {"url": row.get("url"), "spec": row.get("spec")}


# -- charts ---------------------------------------------------------------------------------------------------------
MAX_COMPARED = 20  # runs in one compare chart: each is read from the store


class ChartHandler(MlopsHandler):
    @web.authenticated
    async def get(self, kind: str):
        """A chart's Vega-Lite spec, the one `%mlops` shows: `sweep?id=`, `runs?notebook=&metric=&filter=`,
        `compare?runs=A,B`, `monitor?name=&window=`, `traffic?name=`; each `width=` pixels wide (the panel's)."""
        from .. import api

        arg = self.get_argument
        if kind == "sweep":
            chart, given = api.sweep_chart, {"sweep_id": self._required("id")}
        elif kind == "runs":
            notebook = arg("notebook", None)
            chart, given = api.runs_chart, {
                "metric": arg("metric", None) or None, "filter": arg("filter", ""),
                "notebook": self.notebook_path(notebook, must_exist=False) if notebook else None}
        elif kind == "compare":
            ids = [r for r in self._required("runs").split(",") if r]
            if len(ids) > MAX_COMPARED:
                raise web.HTTPError(400, f"`runs`: at most {MAX_COMPARED} runs side by side, got {len(ids)}")
            with self.user_errors():
                for run_id in ids:
                    check_run_id(run_id)
            chart, given = api.compare_chart, {"run_ids": ids}
        else:
            name = self._required("name")
            with self.user_errors():
                check_name(name, "deployment")
            window = _number({"window": arg("window", None)}, "window", int, None, minimum=1)
            chart = api.monitor_chart if kind == "monitor" else api.traffic_chart
            given = {"name": name, **({"window": window} if window else {})}
        width = _number({"width": arg("width", None)}, "width", int, None, minimum=80)
        if width is not None and width > 4000:
            raise web.HTTPError(400, f"`width` must be at most 4000 pixels, got {width}")
        self.reply(await self.run_blocking(chart, workspace=self.workspace.root, width=width, **given))

    def _required(self, name: str) -> str:
        value = self.get_argument(name, "")
        if not value:
            raise web.HTTPError(400, f"`{name}` is required for this chart")
        return value


# -- schedules ------------------------------------------------------------------------------------------------------
class SchedulesHandler(MlopsHandler):
    @web.authenticated
    async def get(self):
        from .. import api

        from ..schedule import NO_SCHEDULER, schedulers_alive

        rows = await self.run_blocking(api.schedules, workspace=self.workspace.root)
        for row in rows:
            row["path"] = self.relative(row["notebook"])
        alive = await self.run_blocking(schedulers_alive, self.workspace.store)
        # `scheduler`: whether this server runs one; `schedulers`: every live one on the workspace (a daemon too)
        self.reply({"schedules": rows, "scheduler": self.mlops.scheduler_running, "schedulers": alive,
                    "warning": None if alive else NO_SCHEDULER})

    @web.authenticated
    async def post(self):
        from .. import api

        data = self.body()
        path = self.notebook_path(data.get("path"))
        trigger = data.get("trigger") or "cron"
        if trigger not in ("cron", "data-change", "drift"):
            raise web.HTTPError(400, f"`trigger` must be cron, data-change or drift, got {trigger!r}")
        for field in ("name", {"cron": "cron", "drift": "model"}.get(trigger)):
            if field and (not isinstance(data.get(field), str) or not data[field].strip()):
                raise web.HTTPError(400, f"`{field}` is required")
        for field in ("every", "register"):
            if data.get(field) is not None and not isinstance(data[field], str):
                raise web.HTTPError(400, f"`{field}` must be text, e.g. " + ("\"5m\"" if field == "every" else
                                                                               "a model name"))
        require = data.get("require") or []
        if not isinstance(require, list) or not all(isinstance(g, str) for g in require):
            raise web.HTTPError(400, "`require` must be a list of gates such as \"accuracy>=0.9\"")
        added = await self.run_blocking(
            api.add_schedule, str(path), data["name"].strip(), data["cron"].strip() if trigger == "cron" else None,
            _parameters(data), timezone=data.get("timezone") or "UTC", missed=data.get("missed") or "skip",
            retries=_number(data, "retries", int, 0, minimum=0), backoff=_number(data, "backoff", float, 60.0, 0),
            timeout=_number(data, "timeout", float), workspace=self.workspace.root,
            **{k: v for k, v in (("on_data_change", trigger == "data-change"),
                                 ("on_drift", data["model"].strip() if trigger == "drift" else None),
                                 ("threshold", _number(data, "threshold", float)),
                                 ("every", data.get("every") or None), ("register", data.get("register") or None),
                                 ("require", require or None)) if v})
        self.reply(added, 201)


class ScheduleHandler(MlopsHandler):
    @web.authenticated
    async def get(self, name: str):
        """A schedule's fired ticks."""
        from .. import api

        self.reply({"ticks": await self.run_blocking(api.schedule_history, name, workspace=self.workspace.root)})

    @web.authenticated
    async def post(self, name: str):
        """`action`: pause, resume, or run (now, as a background job)."""
        from .. import api

        action = self.body().get("action")
        if action in ("pause", "resume"):
            self.reply(await self.run_blocking(api.set_schedule, name, action, workspace=self.workspace.root))
        elif action == "run":
            await self.run_blocking(self.workspace.store.get_schedule, name)  # unknown name: 400 naming it
            job = self.mlops.jobs.start("schedule", lambda: api.fire_schedule(name, workspace=self.workspace.root),
                                        schedule=name)
            self.reply({"job": job.id}, 202)
        else:
            raise web.HTTPError(400, f"`action` must be pause, resume or run, got {action!r}")

    @web.authenticated
    async def delete(self, name: str):
        from .. import api

        await self.run_blocking(api.set_schedule, name, "delete", workspace=self.workspace.root)
        self.set_status(204)
        self.finish()


class CronHandler(MlopsHandler):
    @web.authenticated
    async def post(self):
        """The next fire times of a cron expression in a timezone (the panel's cron helper)."""
        from .. import schedule

        data = self.body()
        cron, zone = str(data.get("cron") or ""), str(data.get("timezone") or "UTC")

        with self.user_errors():  # milliseconds, computed directly: no worker thread needed
            schedule.check_cron(cron)
            upcoming = [schedule.iso(t, zone) for t in schedule.next_ticks(cron, zone, time.time(), 5)]
        self.reply({"cron": cron, "timezone": zone, "next": upcoming})


class EnginesHandler(MlopsHandler):
    @web.authenticated
    def get(self):
        """The engines registered here, for the panel's Backend choice: name, summary, verbs, settings."""
        from .. import api

        self.reply({"engines": api.list_engines()})


def routes(base_url: str) -> list[tuple]:
    api = url_path_join(base_url, "mlops", "api")
    name = r"([A-Za-z0-9_.:-]+)"
    return [
        (url_path_join(api, "validate"), ValidateHandler),
        (url_path_join(api, "runs"), RunsHandler),
        (url_path_join(api, "runs", name), RunHandler),
        (url_path_join(api, "runs", name, "resume"), ResumeHandler),
        (url_path_join(api, "runs", name, "steps", name, "notebook"), StepNotebookHandler),
        (url_path_join(api, "jobs", name), JobHandler),
        (url_path_join(api, "sweeps"), SweepsHandler),
        (url_path_join(api, "models"), ModelsHandler),
        (url_path_join(api, "models", name, "(promote|rollback)"), AliasHandler),
        (url_path_join(api, "deployments"), DeploymentsHandler),
        (url_path_join(api, "deployments", name), DeploymentHandler),
        (url_path_join(api, "schedules"), SchedulesHandler),
        (url_path_join(api, "schedules", name), ScheduleHandler),
        (url_path_join(api, "cron"), CronHandler),
        (url_path_join(api, "engines"), EnginesHandler),
        (url_path_join(api, "charts", "(sweep|runs|compare|monitor|traffic)"), ChartHandler),
    ]
