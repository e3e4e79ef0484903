"""Jobs: short calls answer within the wait, long ones go on; owners, failures, bounds, expiry."""

from __future__ import annotations

import asyncio

import pytest

from latentmas_mesh.errors import ServiceUnavailable, WMatrixNotFound
from latentmas_mesh.gateway.jobs import JobTable


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def run(coroutine):
    return asyncio.run(coroutine)


async def value(result, delay_s=0.0):
    await asyncio.sleep(delay_s)
    return result


class TestJobs:
    def test_a_quick_call_has_finished_when_run_returns(self):
        async def scenario():
            table = JobTable()
            job = await table.run("generate", "alice", lambda: value(42), wait_s=1.0)
            return job.status, job.result

        assert ("succeeded", 42) == run(scenario())

    def test_a_long_call_returns_running_and_finishes_in_the_background(self):
        async def scenario():
            table = JobTable()
            job = await table.run("generate", "alice", lambda: value(7, 0.2), wait_s=0.01)
            first = job.status
            await asyncio.sleep(0.4)
            return first, table.get(job.id, "alice").status, job.result

        assert ("running", "succeeded", 7) == run(scenario())

    def test_another_owner_cannot_see_a_job(self):
        async def scenario():
            table = JobTable()
            job = await table.run("generate", "alice", lambda: value(1), wait_s=1.0)
            return table.get(job.id, "bob"), table.get(job.id, None), table.get("nope", "alice")

        assert (None, None, None) == run(scenario())

    def test_a_typed_failure_is_kept_and_a_bug_becomes_internal(self):
        async def missing():
            raise WMatrixNotFound("no map", details={})

        async def bug():
            raise KeyError("oops")

        async def scenario():
            table = JobTable()
            typed = await table.run("generate", "a", missing, wait_s=1.0)
            crashed = await table.run("generate", "a", bug, wait_s=1.0)
            return typed, crashed

        typed, crashed = run(scenario())
        assert ("failed", "W_MATRIX_NOT_FOUND") == (typed.status, typed.error.code.value)
        assert ("failed", "INTERNAL") == (crashed.status, crashed.error.code.value)

    def test_finished_jobs_expire_after_their_ttl(self):
        clock = Clock()

        async def scenario():
            table = JobTable(finished_ttl_s=10, clock=clock)
            job = await table.run("generate", "a", lambda: value(1, 0.05), wait_s=0.0)
            await asyncio.sleep(0.1)  # finished in the background, at clock 0
            clock.now = 9.9
            kept = table.get(job.id, "a")
            clock.now = 10.0
            return kept, table.get(job.id, "a")

        kept, expired = run(scenario())
        assert kept is not None
        assert expired is None

    def test_a_call_answered_within_the_wait_is_not_kept(self):
        async def scenario():
            table = JobTable(jobs_max=1)
            quick = [await table.run("g", "a", lambda n=n: value(n), wait_s=1.0) for n in range(3)]
            return [job.result for job in quick], table.get(quick[0].id, "a")

        assert ([0, 1, 2], None) == run(scenario())

    def test_the_table_is_bounded_and_evicts_finished_jobs_first(self):
        async def scenario():
            table = JobTable(jobs_max=2)
            done = await table.run("g", "a", lambda: value(1, 0.01), wait_s=0.0)
            await asyncio.sleep(0.05)
            await table.run("g", "a", lambda: value(2, 5), wait_s=0.0)
            await table.run("g", "a", lambda: value(3, 5), wait_s=0.0)  # evicts `done`
            evicted = table.get(done.id, "a")
            with pytest.raises(ServiceUnavailable):
                await table.run("g", "a", lambda: value(4), wait_s=0.0)
            return evicted

        assert run(scenario()) is None
