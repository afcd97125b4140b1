"""Who owns a run (or a deployment): host:pid:start-time of the process, and whether that process is gone, so a
run whose process died is not shown `running` forever."""
from __future__ import annotations

import os
import socket

# set in a deployment's environment by the Jupyter server that starts it: that server's owner string, whose end
# stops the deployment (serving/workers.py watches it)
STOP_WITH = "MLOPS_STOP_WITH"


def process_owner(pid: int | None = None) -> str:
    """host:pid:start-time of a process; the start time tells a live process from a later one with the same pid."""
    pid = pid or os.getpid()
    try:
        with open(f"/proc/{pid}/stat") as f:
            start = f.read().rsplit(")", 1)[1].split()[19]
    except OSError:
        start = ""
    return f"{socket.gethostname()}:{pid}:{start}"


def owner_is_gone(owner: str | None) -> bool:
    """True when the owner ran on this host and that process no longer exists (elsewhere we cannot tell)."""
    if not owner or owner.count(":") < 2:
        return False
    host, pid, _ = owner.rsplit(":", 2)
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return process_owner(int(pid)) != owner or _zombie(int(pid))


def _zombie(pid: int) -> bool:
    """An ended child its parent has not reaped yet (a server the Jupyter server started, say) is gone too."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False



def alive(store, kind: str, now: float | None = None) -> list[dict]:
    """The processes doing `kind` (a scheduler's passes) that said so lately in the store (within three of their
    intervals, at least a minute) and have not ended: each with its owner, interval and `last_pass` (epoch
    seconds)."""
    import time

    now = time.time() if now is None else now
    return [b for b in store.beats(kind)
            if now - b["last_pass"] <= max(3 * b["interval"], 60.0) and not owner_is_gone(b["owner"])]
