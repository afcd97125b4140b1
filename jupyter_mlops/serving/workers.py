"""Several worker processes serving one app on one port (`--workers N`): a Python process predicts on one core.

The parent binds the listening socket and starts N workers (spawned, never forked: a server has threads); each
builds its own app from a picklable recipe (`build(worker)`: it loads the model itself) and accepts connections
from the shared socket, so the kernel hands each new connection to whichever worker is free to accept it. What a
server shares across its workers lives in a folder of the group (`Worker.shared`): Prometheus' multiprocess files
(metrics.py) and the shadows' reports (mirror.py). Each worker writes a request log of its own (monitor.py).

The parent only supervises: a worker that dies is replaced (one that dies within seconds of starting, again and
again, ends the group with the reason); SIGTERM or SIGINT stops every worker cleanly (each closes its request log
and its shadows) and then the parent; a worker whose parent is gone stops by itself. The parent's pid is the
deployment's owner, so `undeploy` stops the group as it stops a one-process server.

The listening socket is made with `proto=IPPROTO_TCP` and the protocol (limits.py) sets TCP_NODELAY itself: on a
socket bound with proto 0, as uvicorn's `--workers` binds it, asyncio leaves Nagle's algorithm on and every
keep-alive answer waits ~40 ms for the client's delayed ACK.
"""
from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

CRASH_LOOP = 3  # workers in a row that died within START_GRACE of starting: the group gives up
START_GRACE = 10.0
STOP_GRACE = 10.0  # seconds the workers get to finish on stop; then killed (undeploy waits 15 for the parent)


@dataclass(frozen=True)
class Worker:
    index: int
    count: int
    shared: str  # the group's folder: Prometheus' multiprocess files, the shadows' reports


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        from ..errors import MlopsError

        raise MlopsError(f"cannot listen on {host}:{port} ({exc.strerror}): choose another --port") from None
    sock.listen(2048)
    return sock


def _stop_with_owner() -> None:
    """A deployment the Jupyter server started stops with it (unless the user chose to keep it): once the process
    MLOPS_STOP_WITH names is gone, however it ended, this one gets the SIGTERM `undeploy` would send, and stops
    cleanly (request log flushed, workers and shadows ended)."""
    import signal

    from ..owners import STOP_WITH, owner_is_gone

    owner = os.environ.pop(STOP_WITH, "")
    if not owner:
        return

    def watch() -> None:
        while not owner_is_gone(owner):
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="mlops-stop-with", daemon=True).start()


def _watch_parent(server, parent: int) -> None:
    """Stop this worker's server when the group's parent is gone (killed without the chance to stop us)."""
    while not server.should_exit:
        if os.getppid() != parent:
            server.should_exit = True
            return
        time.sleep(1.0)


def _worker(build: Callable[[Worker], Any], worker: Worker, sock: socket.socket, parent: int) -> None:
    import signal

    # before prometheus-client is imported: its values then live in files every worker's /metrics reads
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = worker.shared
    from prometheus_client import values

    values.ValueClass = values.get_value_class()  # in case something imported it first
    from .server import _server

    # Told to stop while the model loads, the worker stops as soon as it serves. (uvicorn handles the signals
    # while it serves, then raises the one it got again under the handler it found: this one, so the worker
    # ends with its clean-up done rather than killed by its own signal.)
    server = None
    stop_asked = threading.Event()

    def stop(*_: Any) -> None:
        stop_asked.set()
        if server is not None:
            server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    app = build(worker)
    server = _server(app)
    server.should_exit = stop_asked.is_set()
    threading.Thread(target=_watch_parent, args=(server, parent), name="mlops-parent-watch", daemon=True).start()
    try:
        server.run(sockets=[sock])
    finally:
        on_stop = getattr(app.state, "on_stop", None)  # the deployment watcher
        if on_stop is not None:
            on_stop()


def _remove_abandoned(folder: Path) -> None:
    """Groups' folders left by a parent that was killed outright (SIGKILL: no chance to remove its own)."""
    import shutil

    for shared in folder.glob("mlops-workers-*-*"):
        pid = shared.name.split("-")[2]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists() and Path("/proc/self").exists():
            shutil.rmtree(shared, ignore_errors=True)


class WorkerGroup:
    """N workers on one listening socket, supervised by this process; `run()` until stopped."""

    def __init__(self, build: Callable[[Worker], Any], host: str, port: int, count: int):
        import tempfile

        if count < 1:
            from ..errors import MlopsError

            raise MlopsError(f"--workers must be at least 1, got {count}")
        self.build, self.count = build, count
        self.sock = listening_socket(host, port)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        _remove_abandoned(Path(tempfile.gettempdir()))
        self.shared = tempfile.mkdtemp(prefix=f"mlops-workers-{os.getpid()}-")
        self.processes: dict[int, Any] = {}
        self.started: dict[int, float] = {}
        self.stopping = threading.Event()
        self.failure: str | None = None

    def _start(self, index: int) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        process = context.Process(target=_worker, name=f"mlops-serve-{index}",
                                  args=(self.build, Worker(index, self.count, self.shared), self.sock, os.getpid()))
        process.start()
        self.processes[index], self.started[index] = process, time.monotonic()

    def _gone(self, process) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(process.pid, self.shared)  # its in-flight gauge goes; its counters stay

    def stop(self, *_: Any) -> None:
        self.stopping.set()

    def run(self) -> None:
        """Start the workers, replace any that dies, and on stop() (SIGTERM, SIGINT when on the main thread) stop
        them all; raises MlopsError when workers keep dying at start (the model cannot load, say)."""
        import shutil
        import signal

        from ..errors import MlopsError

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self.stop)
        crashes = 0
        try:
            for index in range(self.count):
                self._start(index)
            while not self.stopping.wait(0.2):
                for index, process in list(self.processes.items()):
                    if process.is_alive():
                        continue
                    self._gone(process)
                    quick = time.monotonic() - self.started[index] < START_GRACE
                    crashes = crashes + 1 if quick else 0
                    if crashes >= CRASH_LOOP:
                        self.failure = (f"the model server's worker {index} stopped {crashes} times within "
                                        f"{START_GRACE:g} s of starting (exit code {process.exitcode}); see its "
                                        "output above")
                        self.stopping.set()
                        break
                    self._start(index)
        finally:
            for process in self.processes.values():
                if process.is_alive():
                    process.terminate()  # SIGTERM: uvicorn finishes what it answers, the app's lifespan closes
            deadline = time.monotonic() + STOP_GRACE
            for process in self.processes.values():
                process.join(max(0.1, deadline - time.monotonic()))
                if process.is_alive():
                    process.kill()
                    process.join(5)
            self.sock.close()
            shutil.rmtree(self.shared, ignore_errors=True)
        if self.failure:
            raise MlopsError(self.failure)


def serve_recipe(recipe, host: str, port: int, workers: int = 1,
                 on_listening: Callable[[str], Any] | None = None, target=None) -> None:
    """Serve in the foreground until stopped (SIGTERM, SIGINT): in this process (with `target` if it is loaded
    already), or in `workers` processes sharing the port, each loading its own. `on_listening(url)` hears of it
    once the port is bound."""
    from .server import serve_forever

    _stop_with_owner()
    if workers == 1:
        app = recipe(target=target)
        if on_listening:
            on_listening(f"http://{host}:{port}")
        try:
            serve_forever(app, host, port)  # the app's lifespan closes its log and shadows on the way out
        finally:
            stop = getattr(app.state, "on_stop", None)
            if stop is not None:
                stop()
        return
    group = WorkerGroup(recipe, host, port, workers)
    if on_listening:
        on_listening(group.url)
    group.run()
