"""Long work started from the panel (runs, sweeps, a scheduled run fired now) on threads off the event loop.

A job is a thread running one API call; the panel polls `GET /mlops/api/jobs/ID` for its state while the runs
themselves show up in the run table as soon as they are recorded. Finished jobs are kept for a while so a
late poll still learns how they ended.
"""
from __future__ import annotations

import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

KEEP_FINISHED = 500  # finished jobs remembered; older ones are forgotten first


@dataclass
class Job:
    id: str
    kind: str
    info: dict = field(default_factory=dict)
    status: str = "running"  # running | done | failed
    result: Any = None
    error: str | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None

    def to_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind, "status": self.status, "result": self.result, "error": self.error,
                "started": self.started, "finished": self.finished, **self.info}


class Jobs:
    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def start(self, kind: str, work: Callable[[], Any], **info: Any) -> Job:
        job = Job(uuid.uuid4().hex[:12], kind, info)
        with self._lock:
            self._jobs[job.id] = job
            self._forget_old()
        threading.Thread(target=self._run, args=(job, work), name=f"mlops-{kind}-{job.id}", daemon=True).start()
        return job

    def _run(self, job: Job, work: Callable[[], Any]) -> None:
        from ..errors import MlopsError

        try:
            job.result = work()
            job.status = "done"
        except MlopsError as exc:  # the user's mistake: its message says what to fix
            job.status, job.error = "failed", str(exc)
        except BaseException as exc:  # a bug: keep the traceback where the panel can show it
            job.status, job.error = "failed", "".join(traceback.format_exception(exc)).strip()
        job.finished = time.time()

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def running(self) -> list[Job]:
        return [j for j in self._jobs.values() if j.status == "running"]

    def _forget_old(self) -> None:
        done = [j for j in self._jobs.values() if j.status != "running"]
        for job in sorted(done, key=lambda j: j.finished or 0)[: max(0, len(done) - KEEP_FINISHED)]:
            del self._jobs[job.id]
