"""Long calls as jobs: a call that has not answered within a short wait goes on in the
background, and the caller polls its job instead of holding an HTTP request open for minutes."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from latentmas_mesh.errors import InternalError, ProtocolError, ServiceUnavailable

JOBS_MAX: Final = 1024
"""Jobs remembered at once (running or finished); a new one beyond it evicts the oldest
finished job, or is refused while every slot runs."""
FINISHED_TTL_S: Final = 3600.0
"""How long a finished job's answer can be fetched."""

Status = Literal["running", "succeeded", "failed"]


@dataclass
class Job:
    """One background call: who asked, what it is, and its answer once there."""

    id: str
    owner: str | None
    kind: str
    started_s: float
    task: asyncio.Task[Any] | None = None
    status: Status = "running"
    result: Any = None
    error: ProtocolError | None = None
    finished_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def describe(self, now_s: float) -> dict[str, Any]:
        """The job's public state (no result: the caller fetches that from the job's URL)."""
        end = self.finished_s if self.finished_s is not None else now_s
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "elapsed_s": round(end - self.started_s, 3),
        }


class JobTable:
    """Jobs of one gateway process, bounded in number and in how long answers are kept.

    Jobs live in memory: a gateway restart loses their handles, not their effects (a fitted map
    is stored by the worker, and asking again answers at once).
    """

    def __init__(
        self,
        *,
        jobs_max: int = JOBS_MAX,
        finished_ttl_s: float = FINISHED_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._jobs_max = jobs_max
        self._ttl_s = finished_ttl_s
        self._clock = clock

    def now(self) -> float:
        """The table's clock (what `Job.describe` measures elapsed time against)."""
        return self._clock()

    async def run(
        self,
        kind: str,
        owner: str | None,
        call: Callable[[], Awaitable[Any]],
        *,
        wait_s: float,
    ) -> Job:
        """Start `call`; return its job once it finished or after `wait_s`, whichever is first.

        A job that finished within the wait is answered at once and not kept (nobody will ask
        for it by id), so quick calls cost the table nothing."""
        self._make_room()
        job = Job(secrets.token_urlsafe(12), owner, kind, self._clock())
        job.task = asyncio.ensure_future(self._complete(job, call))
        self._jobs[job.id] = job
        await asyncio.wait({job.task}, timeout=wait_s)
        if job.finished_s is not None:
            del self._jobs[job.id]
        return job

    def get(self, job_id: str, owner: str | None) -> Job | None:
        """The caller's own job `job_id`; None for an unknown, expired or another's job."""
        self._expire()
        job = self._jobs.get(job_id)
        if job is None or job.owner != owner:
            return None
        return job

    async def _complete(self, job: Job, call: Callable[[], Awaitable[Any]]) -> None:
        try:
            job.result = await call()
            job.status = "succeeded"
        except ProtocolError as error:
            job.error, job.status = error, "failed"
        except Exception as error:  # a bug must fail the job, typed, never vanish
            job.error = InternalError(
                f"the job failed: {type(error).__name__}", details={"job": job.id}
            )
            job.status = "failed"
        job.finished_s = self._clock()

    def _expire(self) -> None:
        now = self._clock()
        stale = [
            job_id
            for job_id, job in self._jobs.items()
            if job.finished_s is not None and now - job.finished_s >= self._ttl_s
        ]
        for job_id in stale:
            del self._jobs[job_id]

    def _make_room(self) -> None:
        self._expire()
        if len(self._jobs) < self._jobs_max:
            return
        oldest_finished = next(
            (job_id for job_id, job in self._jobs.items() if job.finished_s is not None), None
        )
        if oldest_finished is None:
            raise ServiceUnavailable(
                f"the gateway runs {self._jobs_max} jobs already; retry later",
                details={"jobs_max": self._jobs_max},
            )
        del self._jobs[oldest_finished]


__all__ = ["FINISHED_TTL_S", "JOBS_MAX", "Job", "JobTable", "Status"]
