"""Running a model server: in the foreground (`jupyter-mlops serve`, `deploy`; one process, or a group of worker
processes, see workers.py) or in a background thread (`%mlops serve`)."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any


def load(workspace, ref: str, variant: str = "primary"):
    """The ServedModel for `NAME`, `NAME:VERSION` or `NAME@ALIAS`."""
    from ..registry import fetch_package, resolve
    from .model import ServedModel

    version = resolve(workspace.store, ref)
    digests = json.loads(version["files"]) if version.get("files") else {}
    return ServedModel.from_package(version["name"], version["version"], fetch_package(workspace, version), variant,
                                    digests.get("predict.pkl"))


def deployment(workspace, name: str, canary: int | None = None, weight: float = 10.0, shadow: int | None = None,
               sticky_header: str | None = None):
    """A Deployment of model `name`: the version aliased `production` (else the latest) as primary, plus an
    optional canary version taking `weight` percent, and an optional shadow version."""
    from ..errors import MlopsError
    from ..registry import primary_version
    from .model import Deployment

    primary = load(workspace, f"{name}:{primary_version(workspace.store, name)['version']}")
    canaries = [(load(workspace, f"{name}:{canary}", "canary"), weight)] if canary is not None else []
    shadows = [load(workspace, f"{name}:{shadow}", "shadow")] if shadow is not None else []
    try:
        return Deployment(primary, canaries, shadows, sticky_header)
    except ValueError as exc:
        raise MlopsError(f"--weight: {exc}") from None


def shadow_report(running: dict | None) -> dict | None:
    """A running deployment's shadow comparison (kept in its memory), or None when it is not up."""
    import urllib.request

    if not running or not running["url"]:
        return None
    try:
        with urllib.request.urlopen(f"{running['url']}/v2/shadow", timeout=2) as reply:
            return json.loads(reply.read())
    except (OSError, ValueError):
        return None


def is_up(running: dict | None) -> bool:
    """Whether a stored deployment's server process lives and answers its health check."""
    import urllib.request

    from ..owners import owner_is_gone

    if not running or not running["owner"] or owner_is_gone(running["owner"]):
        return False
    try:
        with urllib.request.urlopen(f"{running['url']}/v2/health/live", timeout=2):
            return True
    except (OSError, ValueError):
        return False


@dataclass(frozen=True)
class ServerRecipe:
    """What it takes to build a server's app, in this process or in a worker process (it pickles): a registered
    version (`model`: NAME, NAME:VERSION, NAME@ALIAS) or a deployment (`deployment` with its `spec`: canary,
    weight, shadow, sticky_header), which then follows the store (DeploymentWatcher)."""
    workspace: str
    model: str | None = None
    deployment: str | None = None
    spec: dict = field(default_factory=dict)
    limits: Any = None
    log_limits: Any = None

    def __call__(self, worker=None, target=None):
        """The app; `target` (the ServedModel or Deployment) when it is loaded already."""
        from ..workspace import Workspace
        from .app import create_app

        ws = Workspace(self.workspace)
        if target is None:
            target = load(ws, self.model) if self.model is not None else deployment(ws, self.deployment, **self.spec)
        app = create_app(target, log_folder=ws.root / "logs" / (self.deployment or target.name), limits=self.limits,
                         log_limits=self.log_limits, worker=worker)
        if self.deployment is not None:  # promote / rollback / a new deploy reach it
            app.state.on_stop = DeploymentWatcher(ws, self.deployment, app.state.live).stop
        return app


def _server(app, host: str = "127.0.0.1", port: int = 0):
    import gc

    import uvicorn

    from .limits import ServerLimits, protocol_class

    limits = getattr(app.state, "limits", None) or ServerLimits()

    # the model, pandas and scikit-learn are loaded for good: keep them out of the garbage collector's full
    # passes, which otherwise scan them all and pause requests for tens of milliseconds
    gc.freeze()
    # one process, no access log: a log line per request costs more than the prediction
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on",
                            http=protocol_class(limits.header_timeout))
    return uvicorn.Server(config)


def serve_forever(app, host: str, port: int) -> None:
    _server(app, host, port).run()


# deployments served by a thread of this process (`%mlops deploy`), so `undeploy` here can stop them
_here: dict[str, "BackgroundServer"] = {}


def served_here(name: str) -> "BackgroundServer | None":
    return _here.get(name)


class BackgroundServer:
    """A server on a thread of this process (for notebooks); `stop()` ends it."""

    def __init__(self, app, host: str, port: int):
        self.app = app
        self.server = _server(app, host, port)
        self.thread = threading.Thread(target=self.server.run, name="mlops-serve", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the model server did not start on {host}:{port} (port in use?)")
            time.sleep(0.02)
        sockets = self.server.servers[0].sockets if self.server.servers else []
        bound_port = sockets[0].getsockname()[1] if sockets else port
        self.url = f"http://{host}:{bound_port}"

    watcher = None  # a DeploymentWatcher, for `%mlops deploy`
    deployment: str | None = None  # the deployment it serves, if any

    def serve_deployment(self, name: str, watcher) -> None:
        self.deployment, self.watcher = name, watcher
        _here[name] = self

    def stop(self) -> None:
        """Stop serving; the app's lifespan then closes its request log, shadow mirror and shadow process."""
        if self.watcher is not None:
            self.watcher.stop()
        if self.deployment is not None and _here.get(self.deployment) is self:
            del _here[self.deployment]
        self.server.should_exit = True
        self.thread.join(15)

    def __repr__(self) -> str:
        return f"<model server {self.url}>"


def serve_in_background(app, host: str = "127.0.0.1", port: int = 0) -> Any:
    return BackgroundServer(app, host, port)


class DeploymentWatcher:
    """Keeps a running server's deployment in step with the store: the `production` alias (promote, rollback) and
    the spec saved by `jupyter-mlops deploy` (canary, weight, shadow, sticky header). Packages are loaded once
    per version; the swap happens between requests, so none is dropped."""

    def __init__(self, workspace, name: str, live, interval: float = 2.0):
        self.workspace, self.name, self.live, self.interval = workspace, name, live, interval
        self._cache: dict = {}
        self._seen = None
        self._stop = threading.Event()
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._loop, name="mlops-deployment-watch", daemon=True)
        self.thread.start()

    def _model(self, version: int, variant: str):
        key = (version, variant)
        if key not in self._cache:
            self._cache[key] = load(self.workspace, f"{self.name}:{version}", variant)
        return self._cache[key]

    def check(self) -> bool:
        """Swap in a new deployment if the store says something changed; True if it did."""
        from ..registry import primary_version
        from .model import Deployment

        store = self.workspace.store
        spec = (store.get_deployment(self.name) or {}).get("spec", {})
        production = primary_version(store, self.name)["version"]
        state = (production, json.dumps(spec, sort_keys=True))
        if state == self._seen:
            return False
        canaries = [(self._model(spec["canary"], "canary"), spec.get("weight", 10.0))] if spec.get("canary") else []
        shadows = [self._model(spec["shadow"], "shadow")] if spec.get("shadow") else []
        self.live.swap(Deployment(self._model(production, "primary"), canaries, shadows, spec.get("sticky_header")))
        self._seen = state
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception as exc:  # a bad update must not take the serving deployment down
                self.errors.append(f"{type(exc).__name__}: {exc}")

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(5)
