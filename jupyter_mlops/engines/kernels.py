"""A pool of warm Jupyter kernels for the steps of one run.

Starting a kernel and importing scikit-learn or pandas into it costs more than most steps take, so the pool starts
kernels before they are needed and loads every module the notebook imports into each. Between steps a kernel's
namespace is wiped (IPython `reset`, new session): the next step sees only the inputs it loads, as in a fresh
kernel, but finds its modules already imported. With `fresh_kernels=True` every step gets a never-used kernel
(a spare is started while the current steps run) for steps that change process-wide state.
"""
from __future__ import annotations

import logging
import os
import secrets
import tempfile
import threading
import time
from queue import Empty
from typing import Any

from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_core.utils import ensure_async

log = logging.getLogger(__name__)

# a new history session would write to IPython's history database on every step; numbering restarts instead
RESET = "get_ipython().reset(new_session=False)\nget_ipython().execution_count = 1"


class KernelStartError(RuntimeError):
    pass


class PromptClient(AsyncKernelClient):
    """A kernel client that notices a ready kernel in milliseconds.

    jupyter_client's wait_for_ready sends kernel_info and then waits 0.2 s for an IOPub message; a new
    subscription usually misses the first one, so every client (papermill makes one per step) paid ~0.2 s.
    Asking again every 10 ms until IOPub answers gives the same guarantee (no output is lost) at once."""

    async def _async_wait_for_ready(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout if timeout is not None else float("inf"))
        while True:
            self.kernel_info()
            try:
                await ensure_async(self.iopub_channel.get_msg(timeout=0.01))
                return
            except Empty:
                if not await self._async_is_alive():
                    raise RuntimeError("the kernel died before it answered") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the kernel did not answer in {timeout:.0f} s") from None

    wait_for_ready = _async_wait_for_ready

    def start_channels(self, shell: bool = True, iopub: bool = True, stdin: bool = True, hb: bool = False,
                       control: bool = True) -> None:
        """No heartbeat channel unless asked: its thread per client pings the kernel every few seconds, and whether
        the kernel lives is known from its manager (the process) anyway."""
        super().start_channels(shell=shell, iopub=iopub, stdin=stdin, hb=hb, control=control)


def _run_sync(coroutine_fn):
    from jupyter_core.utils import run_sync

    return run_sync(coroutine_fn)


def close_thread_loop() -> None:
    """Close the event loop jupyter_core's run_sync made for this thread, as the thread ends: left to the garbage
    collector, every step's thread kept an epoll and a socket pair open until the next full collection."""
    import asyncio

    try:
        loop = asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:  # this thread never made one
        return
    if not loop.is_running() and not loop.is_closed():
        loop.close()
    asyncio.set_event_loop(None)


class KernelPool:
    def __init__(self, kernel_name: str, cwd: str, size: int, modules: list[str] | None = None,
                 fresh_kernels: bool = False):
        """`modules=None` starts the first kernel at once and warms it once `configure` names the modules (the
        notebook is analysed meanwhile)."""
        self.kernel_name = kernel_name
        self.cwd = cwd
        self.size = max(1, size)
        self.modules: list[str] = []
        self._configured = threading.Event()
        if modules is not None:
            self.configure(self.size, modules)
        self.fresh_kernels = fresh_kernels
        self._cond = threading.Condition()
        self._idle: list[Any] = []
        self._busy: set[Any] = set()
        self._warming: set[Any] = set()
        self._starters: list[threading.Thread] = []
        self._starting = 0
        self._closed = False
        self._error: Exception | None = None
        # one kernel at once first: on a small machine, kernels starting together slow the first step down
        self._spawn(1)

    def configure(self, size: int, modules: list[str]) -> None:
        """How many kernels the run needs and what to import into them."""
        self.size = max(1, size)
        self.modules = list(dict.fromkeys(modules))
        self._configured.set()

    # -- lifecycle -----------------------------------------------------------------------------------------------
    def _spawn(self, count: int) -> None:
        with self._cond:
            if self._closed:
                return
            count = min(count, self.size - len(self._idle) - len(self._busy) - self._starting)
            self._starting += max(0, count)
            for _ in range(count):
                thread = threading.Thread(target=self._start_one, name="mlops-kernel-start", daemon=True)
                self._starters.append(thread)
                thread.start()

    def _start_one(self) -> None:
        km, error = None, None
        try:
            km = self._start_kernel()
            with self._cond:
                self._warming.add(km)  # close() can reach it from now on
            self._warm_up(km)
        except Exception as exc:
            error = exc
        with self._cond:
            self._starting -= 1
            self._warming.discard(km)
            if self._closed:
                pass
            elif error is not None:
                self._error = KernelStartError(f"could not start kernel `{self.kernel_name}`: {error}")
            else:
                self._idle.append(km)
                km = None
            self._cond.notify_all()
        if km is not None:
            shutdown_kernel(km)
        elif error is None:
            self._spawn(self.size)  # the first is up: start the rest
        close_thread_loop()

    def _start_kernel(self) -> Any:
        from jupyter_client.kernelspec import NoSuchKernel
        from jupyter_client.manager import AsyncKernelManager

        # IPC sockets under a unique prefix: no TCP ports to race for, and no unencrypted-TCP warning per kernel
        prefix = os.path.join(tempfile.gettempdir(), f"mlops-{secrets.token_hex(6)}")
        km = AsyncKernelManager(kernel_name=self.kernel_name, transport="ipc", ip=prefix,
                                client_class=f"{__name__}.PromptClient")
        # MLOPS_PARENT_PID lets anyone (and our tests) find kernels by the process that started them
        env = {**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1", "MLOPS_PARENT_PID": str(os.getpid())}
        # the kernel's own stderr (not its cells' output, which goes over IOPub): where a kernel that cannot start,
        # or dies, says why; read back into the error, removed with the kernel
        km.mlops_stderr = open(f"{prefix}.stderr", "w+b")
        try:
            # IPython kernels keep no history: steps never read it, and kernels started together race for the
            # same session row in ~/.ipython's history database ("ERROR! Session/line number was not unique in
            # database" printed into a step's output)
            extra = ["--HistoryManager.enabled=False"] if any("ipykernel" in a for a in km.kernel_spec.argv) else []
            _run_sync(km.start_kernel)(cwd=self.cwd, env=env, stderr=km.mlops_stderr, extra_arguments=extra)
        except NoSuchKernel:
            _close_stderr(km)
            raise RuntimeError(f"no kernel named `{self.kernel_name}` is installed (the notebook's kernelspec); "
                               "install it (e.g. `python -m ipykernel install --user --name "
                               f"{self.kernel_name}`) or pick an installed kernel in JupyterLab") from None
        except Exception:
            _close_stderr(km)
            raise
        return km

    def _warm_up(self, km: Any) -> None:
        """Wait until the kernel answers and import the notebook's modules into it. A module that fails to import
        is left to the step that imports it to report; nothing here fails the run unless the kernel itself is
        gone, and then the error says why (its stderr)."""
        self._configured.wait()  # set by configure(), or by close() when the run ends before it is configured
        if self._closed:
            return
        # one function, so the warm-up binds nothing in the namespace the steps will use (with no module to
        # import, a loop variable would never be bound and a `del` of it would fail)
        # then the imported modules are frozen out of the garbage collector: IPython's reset() between steps runs a
        # full collection, which otherwise walks every object of every module imported (~50 ms a step)
        code = ("def _mlops_warm_up(names):\n    import gc, importlib\n    for name in names:\n        try:\n"
                "            importlib.import_module(name)\n        except BaseException:\n            pass\n"
                "    gc.collect()\n    gc.freeze()\n"
                "_mlops_warm_up(%r)\ndel _mlops_warm_up\n") % self.modules
        kc = km.client()
        kc.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)
        try:
            run_quietly(km, kc, code, timeout=300)
        except Exception as exc:
            if self._closed:
                return
            if not _run_sync(km.is_alive)():
                raise RuntimeError(f"{kernel_death_reason(km)} before it could run a step") from None
            log.warning("warming up kernel `%s` failed (%s); it will import its modules in the step instead",
                        self.kernel_name, exc)
        finally:
            kc.stop_channels()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- use -----------------------------------------------------------------------------------------------------
    def acquire(self) -> Any:
        """A warm kernel, waiting for one if all are busy or starting."""
        with self._cond:
            while True:
                if self._closed:
                    raise KernelStartError("the run was cancelled")
                if self._idle:
                    km = self._idle.pop(0)
                    self._busy.add(km)
                    return km
                if self._starting == 0:
                    if self._error is not None:
                        raise self._error
                    self._spawn(1)  # the condition's lock is re-entrant
                self._cond.wait(0.5)

    def release(self, km: Any, reusable: bool = True) -> None:
        """Give a kernel back after a step: wiped and kept, or shut down and replaced."""
        keep = reusable and not self.fresh_kernels and not self._closed
        wiped, km.mlops_wiped = getattr(km, "mlops_wiped", False), False  # by the step's own client (steps.py)
        if keep and not wiped:
            try:
                reset_namespace(km)
            except Exception as exc:
                log.debug("kernel reset failed, replacing it: %r", exc)
                keep = False
        with self._cond:
            self._busy.discard(km)
            if keep:
                self._idle.append(km)
            self._cond.notify_all()
        if not keep:
            shutdown_kernel(km)
            self._spawn(1)

    def close(self) -> None:
        """Shut every kernel down, busy and warming ones included (cancel uses this to stop running steps), and
        wait for kernels still starting, so that none outlives the run."""
        with self._cond:
            self._closed = True
            kernels = self._idle + list(self._busy)
            warming = list(self._warming)
            self._idle = []
            starters = list(self._starters)
            self._cond.notify_all()
        self._configured.set()  # a kernel still waiting for its configuration stops waiting
        # a warming kernel belongs to its starter thread, which shuts it down once it sees the pool closed (two
        # threads shutting one kernel manager down at once can hang); killing its process ends a warm-up at once
        for km in warming:
            kill_kernel_process(km)
        stoppers = [threading.Thread(target=_shutdown_in_thread, args=(km,), daemon=True) for km in kernels]
        for t in stoppers:
            t.start()
        for t in stoppers + starters:
            t.join(60)


def run_quietly(km: Any, kc: Any, code: str, timeout: float) -> None:
    """Run code in the kernel without output or history, waiting for its reply on the shell channel only (after
    papermill, a task of nbclient may still be reading IOPub on this client); raise if it fails."""
    msg_id = kc.execute(code, silent=True, store_history=False, allow_stdin=False)
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no reply from the kernel in {timeout:.0f} s")
        try:
            reply = _run_sync(kc.shell_channel.get_msg)(timeout=min(remaining, 1.0))
        except Empty:
            if not _run_sync(km.is_alive)():  # shut down meanwhile (a cancelled run): stop waiting
                raise RuntimeError("the kernel is gone") from None
            continue
        if reply.get("parent_header", {}).get("msg_id") == msg_id:
            break
    if reply["content"]["status"] != "ok":
        raise RuntimeError(f"{reply['content'].get('ename')}: {reply['content'].get('evalue')}")


def reset_namespace(km: Any, timeout: float = 60) -> None:
    """Wipe the kernel's user namespace through a shell-only client: no IOPub to subscribe to, so no readiness
    handshake; the request waits in the socket until the connection is up. (A client papermill has used may
    still have nbclient tasks listening on it, which would swallow the reply.)"""
    kc = km.client()
    kc.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)
    try:
        run_quietly(km, kc, RESET, timeout)
    finally:
        kc.stop_channels()


def kill_kernel_process(km: Any) -> None:
    """SIGKILL the kernel's process, without touching its manager (safe from any thread)."""
    process = getattr(getattr(km, "provisioner", None), "process", None)
    try:
        if process is not None and process.poll() is None:
            process.kill()
    except OSError:
        pass


CLEANUP_WAIT = 10.0  # seconds a dead kernel's manager gets to close its ZeroMQ context


def shutdown_kernel(km: Any) -> None:
    try:
        if _run_sync(km.is_alive)():
            _run_sync(km.shutdown_kernel)(now=True)
        else:
            _cleanup_bounded(km)
    except Exception as exc:
        log.debug("kernel shutdown: %r", exc)
    _close_stderr(km)


def _cleanup_bounded(km: Any) -> None:
    """A killed kernel's manager closes its ZeroMQ context on a thread of its own, waited for CLEANUP_WAIT seconds:
    zmq's context.term() can wait forever for a socket it cannot close (seen once, after a run's timeout killed its
    step), and a run, a sweep or the scheduler must not hang on it. Left behind, it ends when it ends."""
    def cleanup() -> None:
        try:
            _run_sync(km.cleanup_resources)()
        except Exception as exc:
            log.debug("kernel cleanup: %r", exc)
        finally:
            close_thread_loop()

    worker = threading.Thread(target=cleanup, name="mlops-kernel-cleanup", daemon=True)
    worker.start()
    worker.join(CLEANUP_WAIT)
    if worker.is_alive():
        log.warning("a dead kernel's ZeroMQ context did not close within %g s; left to close by itself",
                    CLEANUP_WAIT)


def _shutdown_in_thread(km: Any) -> None:
    shutdown_kernel(km)
    close_thread_loop()


def _close_stderr(km: Any) -> None:
    stderr = getattr(km, "mlops_stderr", None)
    if stderr is not None and not stderr.closed:
        stderr.close()
        try:
            os.unlink(stderr.name)
        except OSError:
            pass


def kernel_stderr_tail(km: Any, lines: int = 8) -> str:
    """The last lines the kernel process wrote to its stderr (a traceback, a fatal error), or ''."""
    stderr = getattr(km, "mlops_stderr", None)
    if stderr is None or stderr.closed:
        return ""
    try:
        stderr.flush()
        with open(stderr.name, "rb") as f:
            f.seek(max(0, os.path.getsize(stderr.name) - 8192))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join([ln for ln in text.splitlines() if ln.strip()][-lines:])


def kernel_death_reason(km: Any) -> str:
    """Why a kernel process is gone, in words a user can act on."""
    import signal

    process = getattr(getattr(km, "provisioner", None), "process", None)
    code = process.poll() if process is not None else None
    if code is None:
        reason = "the kernel died"
    elif code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (killed: out of memory, or stopped by another process)" if -code == 9 else ""
        reason = f"the kernel died: {name}{hint}"
    else:
        reason = f"the kernel exited with code {code}"
    said = kernel_stderr_tail(km)
    return f"{reason}; it said:\n{said}" if said else reason
