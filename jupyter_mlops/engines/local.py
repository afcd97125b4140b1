"""The embedded engine (`--backend local`, the default): everything on this machine, recorded in the workspace's
store. Runs and sweeps execute their steps on warm kernels in this process (engines/steps.py, through
orchestration.py and trials.py); a deployment is a model server on this machine; a schedule is a row the
scheduler (`jupyter-mlops scheduler`, or the Jupyter server's) fires.
"""
from __future__ import annotations

import os
import threading
from typing import Any, Callable

from .abc import Engine


class LocalEngine(Engine):
    name = "local"
    summary = "this machine: kernels in this process, model servers on this machine, the local scheduler"
    verbs = ("run", "sweep", "deploy", "undeploy", "schedule")

    def __init__(self, workspace: str | os.PathLike | None = None, **settings: Any):
        super().__init__(workspace, **settings)
        self._executors: list = []  # every StepExecutor started for this engine's work, for cancel()
        self._cancelled = threading.Event()
        self._lock = threading.Lock()

    def _watch(self, executor) -> None:
        with self._lock:
            self._executors.append(executor)
        if self._cancelled.is_set():
            executor.cancel()

    def cancel(self) -> None:
        self._cancelled.set()
        with self._lock:
            executors = list(self._executors)
        for executor in executors:
            executor.cancel()

    def run(self, notebook: str | os.PathLike, parameters: dict[str, Any] | None = None, *,
            run_id: str | None = None, on_update: Callable | None = None, on_log: Callable | None = None,
            max_parallel: int | None = None, timeout: float | None = None, run_timeout: float | None = None,
            fresh_kernels: bool = False, watch_paths: list[str] | None = None, data_checks: str | None = None,
            data_thresholds: dict[str, float] | None = None) -> dict:
        """`max_parallel` steps at once (default: the CPUs), `timeout` per cell, `run_timeout` for the whole run;
        `fresh_kernels`: every step on a never-used kernel; `watch_paths`: data read that the steps' own record
        misses (data_reads.py); `data_checks` warn|strict|off with `data_thresholds` (data_checks.py). (Step output
        goes to the step notebooks, not on_log.)"""
        from ..orchestration import run

        return run(notebook, parameters, workspace=self.workspace, max_parallel=max_parallel, timeout=timeout,
                   run_timeout=run_timeout, fresh_kernels=fresh_kernels, on_update=on_update, run_id=run_id,
                   watch=self._watch, watch_paths=watch_paths, data_checks=data_checks,
                   data_thresholds=data_thresholds)

    def sweep(self, notebook: str | os.PathLike, plan, *, on_trial: Callable | None = None,
              timeout: float | None = None, fresh_kernels: bool = False) -> dict:
        """Every trial on one pool of warm kernels; steps no swept parameter reaches run once for all."""
        from ..orchestration import say_warnings
        from ..trials import run_sweep
        from ..workspace import Workspace

        say_warnings(plan.pipeline)
        ws = Workspace.locate(self.workspace, notebook)
        return run_sweep(ws, notebook, plan.pipeline, plan.points, plan.space, metric=plan.metric,
                         direction=plan.direction, parallel=plan.parallel, timeout=timeout,
                         fresh_kernels=fresh_kernels, on_trial=on_trial, watch=self._watch)

    def deploy(self, name: str, *, canary: int | None = None, weight: float = 10.0, shadow: int | None = None,
               sticky_header: str | None = None, host: str = "127.0.0.1", port: int = 8080, limits=None,
               log_limits=None, wait: bool = False, on_start: Callable[[dict], Any] | None = None,
               workers: int = 1, rollout: dict | None = None) -> dict:
        """A model server on this machine. When the deployment's server is already up, it is only told the new
        spec (it switches within seconds, dropping no request): status `updated`. Otherwise a new server starts:
        with `wait`, in the foreground until it is stopped (Ctrl-C, SIGTERM; `on_start` hears of it first), by
        `workers` processes sharing the port; without, on a thread of this process, returned under `server`
        (`.stop()` ends it). `rollout`: a planned progressive rollout (rollout.plan), recorded once every version
        has loaded; the scheduler's controller moves the spec's weight from then on."""
        from ..rollout import begin, stop
        from ..serving.server import deployment
        from ..workspace import Workspace

        ws = Workspace.locate(self.workspace)
        spec = {"canary": canary, "weight": weight, "shadow": shadow, "sticky_header": sticky_header}
        target = deployment(ws, name, canary, weight, shadow, sticky_header)  # every version loads, or an error
        said = begin(ws.store, rollout)["lines"] if rollout is not None else []
        try:
            return self._serve(ws, name, spec, target, said, host, port, limits, log_limits, wait, on_start, workers)
        except BaseException as exc:
            if rollout is not None:
                stop(ws.store, name, f"the deploy failed: {exc}")
            raise

    def _serve(self, ws, name: str, spec: dict, target, said: list[str], host: str, port: int, limits, log_limits,
               wait: bool, on_start: Callable[[dict], Any] | None, workers: int) -> dict:
        """`deploy` once its versions have loaded: the running server told, or a new one started; `said` (what
        a rollout will do) follows the first line."""
        from ..owners import process_owner
        from ..serving.app import create_app
        from ..serving.server import DeploymentWatcher, ServerRecipe, is_up, serve_in_background
        from ..serving.workers import serve_recipe

        running = ws.store.get_deployment(name)
        if is_up(running):
            ws.store.save_deployment(name, spec)
            return {"name": name, "status": "updated", "url": running["url"],
                    "lines": [f"updated the running deployment of {name} at {running['url']}; it switches within "
                              "seconds, without dropping requests", *said]}
        what = f"{name} version {target.primary.version}" + "".join(
            f", canary version {m.version} at {w:g}%" for m, w in target.canaries) + "".join(
            f", shadow version {m.version}" for m in target.shadows)
        if not wait:
            app = create_app(target, log_folder=ws.root / "logs" / name, limits=limits, log_limits=log_limits)
            server = serve_in_background(app, host, port)
            ws.store.save_deployment(name, spec, server.url, process_owner())
            server.serve_deployment(name, DeploymentWatcher(ws, name, app.state.live))
            return {"name": name, "status": "started", "url": server.url, "server": server,
                    "lines": [f"serving {what} at {server.url}", *said]}
        started = {"name": name, "status": "started", "url": f"http://{host}:{port}"}

        def listening(url: str) -> None:
            ws.store.save_deployment(name, spec, url, process_owner())
            started.update(url=url, lines=[f"serving {what} on {url}" + (f" ({workers} worker processes)"
                                                                        if workers > 1 else ""), *said])
            if on_start:
                on_start(started)

        recipe = ServerRecipe(str(ws.root), deployment=name, spec=spec, limits=limits, log_limits=log_limits)
        serve_recipe(recipe, host, port, workers, on_listening=listening, target=target)  # until stopped
        return {**started, "status": "stopped"}

    def undeploy(self, name: str) -> dict:
        """Stop the deployment's server and forget the deployment (its request logs stay). A server on a thread
        of this process is stopped directly; one in another process on this machine gets SIGTERM (it shuts down
        cleanly: the request log is flushed, the shadows end), then SIGKILL if it has not gone in 15 s."""
        from ..errors import MlopsError
        from ..names import check_name
        from ..workspace import Workspace

        ws = Workspace.locate(self.workspace)
        row = ws.store.get_deployment(check_name(name))
        if row is None:
            known = ", ".join(d["name"] for d in ws.store.deployments()) or "none"
            raise MlopsError(f"no deployment `{name}` in {ws.root}; deployments there: {known}")
        lines = [_stop_server(row)]
        ws.store.delete_deployment(name)
        lines.append(f"removed the deployment {name}; its request logs stay in {ws.root / 'logs' / name}")
        return {"name": name, "status": "stopped", "url": row["url"], "lines": lines}

    def schedule(self, notebook: str | os.PathLike, name: str, cron: str | None,
                 parameters: dict[str, Any] | None = None, *, timezone: str = "UTC", missed: str = "skip",
                 retries: int = 0, backoff: float = 60.0, timeout: float | None = None, on_data_change: bool = False,
                 every: str | float | None = None, watch_paths: list[str] | None = None, on_drift: str | None = None,
                 threshold: float | None = None, drift_window: str | float | None = None,
                 register: str | None = None, require: list[str] | None = None,
                 rollout: dict | bool | None = None) -> dict:
        """A row in the store that the scheduler fires once per tick, once per change of the data the notebook
        reads (`on_data_change`, checked `every`), or at most once per `drift_window` while model `on_drift`
        drifts past `threshold`; a succeeded run may `register` its model behind `require` gates, and `rollout`
        that version progressively on the model's deployment. Every argument is checked first."""
        from ..schedule import NO_SCHEDULER, add, schedulers_alive
        from ..workspace import Workspace

        ws = Workspace.locate(self.workspace, notebook)
        added = add(ws, notebook, name, cron, parameters, timezone=timezone, missed=missed, retries=retries,
                    backoff=backoff, timeout=timeout, on_data_change=on_data_change, every=every,
                    watch_paths=watch_paths, on_drift=on_drift, threshold=threshold, drift_window=drift_window,
                    register=register, require=require, rollout=rollout)
        warning = None if schedulers_alive(ws.store) else NO_SCHEDULER
        when = added["when"] if added["trigger"] else f"{added['cron']} ({added['timezone']})"
        return {**added, "warning": warning,
                "lines": [f"schedule {added['name']}: {when}, next {'check' if added['trigger'] else 'tick'} "
                          f"{added['next_tick']}"] + ([f"warning: {warning}"] if warning else [])}


def _stop_server(row: dict, grace: float = 15.0) -> str:
    """Stop the process (or thread of this process) serving a stored deployment; says what it did."""
    import signal
    import socket
    import time

    from ..errors import MlopsError
    from ..owners import owner_is_gone
    from ..serving.server import served_here

    owner, name = row["owner"], row["name"]
    if not owner or owner_is_gone(owner):
        return f"the server of {name} was not running"
    host, pid, _ = owner.rsplit(":", 2)
    if host != socket.gethostname():
        raise MlopsError(f"{name} is served from {host} (pid {pid}); run `jupyter-mlops undeploy {name}` there")
    if int(pid) == os.getpid():
        server = served_here(name)
        if server is None:  # its thread's server was stopped already (`.stop()` in the notebook)
            return f"the server of {name} was not running"
        server.stop()
        return f"stopped the server of {name} at {row['url']} (a thread of this process)"
    try:
        os.kill(int(pid), signal.SIGTERM)
        deadline = time.monotonic() + grace
        while not owner_is_gone(owner) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not owner_is_gone(owner):
            os.kill(int(pid), signal.SIGKILL)
    except ProcessLookupError:
        pass  # it ended meanwhile
    except PermissionError:
        raise MlopsError(f"the server of {name} (pid {pid}) belongs to another user; stop it as that user") from None
    return f"stopped the server of {name} at {row['url']} (pid {pid})"
