"""Running a model server: in the foreground (`jupyter-mlops serve`) or in a background thread (`%mlops serve`)."""
from __future__ import annotations

import threading
import time
from typing import Any


def load(workspace, ref: str, variant: str = "primary"):
    """The ServedModel for `NAME`, `NAME:VERSION` or `NAME@ALIAS`."""
    from ..registry import resolve
    from .app import ServedModel

    version = resolve(workspace.store, ref)
    return ServedModel.from_package(version["name"], version["version"], version["package"], variant)


def deployment(workspace, name: str, canary: int | None = None, weight: float = 10.0, shadow: int | None = None,
               sticky_header: str | None = None):
    """A Deployment of model `name`: the version aliased `production` (else the latest) as primary, plus an
    optional canary version taking `weight` percent, and an optional shadow version."""
    from ..errors import MlopsError
    from .app import Deployment

    aliases = {a["alias"]: a["version"] for a in workspace.store.aliases(name)}
    primary = load(workspace, f"{name}@production" if "production" in aliases else name)
    canaries = [(load(workspace, f"{name}:{canary}", "canary"), weight)] if canary is not None else []
    shadows = [load(workspace, f"{name}:{shadow}", "shadow")] if shadow is not None else []
    try:
        return Deployment(primary, canaries, shadows, sticky_header)
    except ValueError as exc:
        raise MlopsError(f"--weight: {exc}") from None


def _server(app, host: str, port: int):
    import uvicorn

    # one process, no access log: a log line per request costs more than the prediction
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")
    return uvicorn.Server(config)


def serve_forever(app, host: str, port: int) -> None:
    _server(app, host, port).run()


class BackgroundServer:
    """A server on a thread of this process (for notebooks); `stop()` ends it."""

    def __init__(self, app, host: str, port: int):
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

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def __repr__(self) -> str:
        return f"<model server {self.url}>"


def serve_in_background(app, host: str = "127.0.0.1", port: int = 0) -> Any:
    return BackgroundServer(app, host, port)
