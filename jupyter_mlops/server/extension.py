"""Loading the server extension: one workspace for the whole server, the handlers, and the optional scheduler.

Configure in jupyter_server_config.py (or on the command line as --JupyterMlops.scheduler=True):

    c.JupyterMlops.workspace_dir = "/data/team/.mlops"   # default: $MLOPS_WORKSPACE, else <root_dir>/.mlops
    c.JupyterMlops.scheduler = True                  # run due schedules from this server (off by default)
    c.JupyterMlops.scheduler_interval = 30.0
"""
from __future__ import annotations

import atexit
import os
import threading
from functools import cached_property
from pathlib import Path

from traitlets import Bool, Float, Unicode
from traitlets.config import Configurable

from .jobs import Jobs


class JupyterMlops(Configurable):
    workspace_dir = Unicode("", help="The jupyter-mlops workspace (store, runs, models) of this "
                            "server; default $MLOPS_WORKSPACE, else .mlops in the server's root dir.").tag(config=True)
    scheduler = Bool(False, help="Run the scheduler loop inside this server: due schedules fire from here. Leave "
                     "it off when a `jupyter-mlops scheduler` daemon serves the same workspace (both together "
                     "are safe: each tick is claimed once).").tag(config=True)
    scheduler_interval = Float(30.0, help="Seconds between two scheduler passes.").tag(config=True)

    def __init__(self, root_dir: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.root_dir = Path(root_dir).expanduser().resolve()
        self.jobs = Jobs()
        self._stop = threading.Event()
        self.scheduler_running = False

    @cached_property
    def workspace(self):
        from ..workspace import Workspace

        return Workspace(self.workspace_dir or os.environ.get("MLOPS_WORKSPACE") or self.root_dir / ".mlops")

    def start_scheduler(self, log) -> None:
        from ..schedule import Scheduler

        scheduler = Scheduler(self.workspace)

        def loop() -> None:
            try:
                scheduler.run_forever(self.scheduler_interval, self._stop)
            except Exception:  # keep the server up; say why the schedules stopped firing
                log.exception("jupyter-mlops: the scheduler loop stopped")
                self.scheduler_running = False

        threading.Thread(target=loop, name="mlops-scheduler", daemon=True).start()
        self.scheduler_running = True
        atexit.register(self._stop.set)
        log.info("jupyter-mlops: scheduler on %s, a pass every %g s", self.workspace.root, self.scheduler_interval)


def load(serverapp) -> None:
    from .handlers import routes

    mlops = JupyterMlops(serverapp.root_dir, parent=serverapp)
    web_app = serverapp.web_app
    web_app.settings["jupyter_mlops"] = mlops
    web_app.add_handlers(".*$", routes(web_app.settings["base_url"]))
    if mlops.scheduler:
        mlops.start_scheduler(serverapp.log)
    serverapp.log.info("jupyter-mlops: REST API at %smlops/api/", web_app.settings["base_url"])
