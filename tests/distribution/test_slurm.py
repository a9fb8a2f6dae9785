"""Actors as Slurm job steps: a real one-node cluster (``testing._slurm``: munged,
slurmctld, slurmd), ``srun`` to start, ``scancel`` on teardown."""

from __future__ import annotations

import os
import subprocess
import threading

import pytest
import trio

import notebook_actors as na
from notebook_actors import testing
from notebook_actors.testing._slurm import can_run_slurm, slurm_cluster


@pytest.fixture(scope="module")
def slurm():
    why_not = can_run_slurm()
    if why_not:
        pytest.skip(why_not)
    with slurm_cluster() as conf:
        yield conf


def job_env() -> dict:
    return {"job": os.environ.get("SLURM_JOB_ID"), "step": os.environ.get("SLURM_STEP_ID"), "pid": os.getpid()}


def queued_jobs() -> list[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%i %j"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if "actor-" in line]


@testing.trio_test
async def test_an_actor_runs_as_a_slurm_job_and_answers(slurm, reg):
    """Test that an actor started with srun runs inside a Slurm job and serves RPC."""
    async with na.open_nursery(**reg) as n:
        portal = await n.start_actor("step", enable_modules=[__name__], host=na.SlurmLauncher(mode="srun"))
        found = await portal.run(job_env)
        assert found["job"] is not None and found["pid"] != os.getpid()
        assert any("actor-step" in line for line in queued_jobs())
        await portal.cancel_actor()
    assert testing.wait_until_gone([found["pid"]], 5.0) == []


@testing.trio_test
async def test_cancel_ends_the_job(slurm, reg):
    """Test that cancelling the nursery ends the actor's process and leaves no job
    queued (scancel on teardown)."""
    async with na.open_nursery(**reg) as n:
        portal = await n.start_actor("busy", enable_modules=[__name__], host=na.SlurmLauncher(mode="srun"))
        found = await portal.run(job_env)
        await n.cancel()
    assert testing.wait_until_gone([found["pid"]], 5.0) == []
    with trio.fail_after(10):
        while queued_jobs():
            await trio.sleep(0.1)


@testing.trio_test
async def test_srun_options_reach_slurm(slurm, reg):
    """Test that a bad partition is refused by Slurm with its reason, as a LaunchError."""
    async with na.open_nursery(**reg) as n:
        with pytest.raises(na.LaunchError, match=r"(?i)slurm"):
            await n.start_actor("nowhere", host=na.SlurmLauncher(partition="no-such-partition"))


@testing.trio_test
async def test_outside_an_allocation_each_actor_is_a_batch_job(slurm, reg, monkeypatch):
    """Test that outside an allocation an actor is a batch job of its own (sbatch;
    ``launcher="slurm"`` is the default launcher, in auto mode):
    it answers, its boot file (the tree's secret) is gone once read, and cancelling
    the nursery leaves no job queued."""
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    from notebook_actors._transport._uds import runtime_dir

    async with na.open_nursery(**reg) as n:
        portal = await n.start_actor("batch", enable_modules=[__name__], launcher="slurm")
        found = await portal.run(job_env)
        assert found["job"] is not None
        assert not list(runtime_dir().glob("slurm-*.boot"))
        await n.cancel()
    assert testing.wait_until_gone([found["pid"]], 5.0) == []
    with trio.fail_after(10):
        while queued_jobs():
            await trio.sleep(0.1)
    assert not list(runtime_dir().glob("slurm-*"))


def exit_soon(code: int) -> None:
    """Return at once; the process exits with ``code`` a moment later (no call running)."""
    threading.Timer(0.2, os._exit, args=(code,)).start()


@testing.trio_test
async def test_a_batch_actor_that_crashes_reports_its_exit_code(slurm, reg):
    """Test that a batch-job actor dying with code 5 is reported with that code."""
    with pytest.raises(na.ActorCrashed, match="5"):
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("doomed", enable_modules=[__name__], host=na.SlurmLauncher(mode="sbatch"))
            await portal.run(exit_soon, code=5)
            with trio.fail_after(20):
                await trio.sleep_forever()
