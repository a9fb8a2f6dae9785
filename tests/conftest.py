"""Test-wide fixtures: a private registry per test, and the guard that every test
leaves no actor process behind."""

from __future__ import annotations

import os
import time
import uuid

import psutil
import pytest

from notebook_actors import testing

# Marks the processes this pytest run starts (children inherit the environment), so
# the scan below never blames, or kills, actors of another test run on the same host.
SESSION_MARK = ("NOTEBOOK_ACTORS_TEST_SESSION", uuid.uuid4().hex)
os.environ[SESSION_MARK[0]] = SESSION_MARK[1]


def _actor_like(proc: psutil.Process) -> bool:
    try:
        cmd = " ".join(proc.cmdline())
        if not ("notebook_actors" in cmd or "multiprocessing" in cmd or "ipykernel" in cmd):
            return False
        return proc.environ().get(SESSION_MARK[0]) == SESSION_MARK[1]
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


#: multiprocessing's helpers live as long as the process that started them (here: the
#: pytest process), by design; the actors they fork are still counted.
_MP_HELPERS = ("multiprocessing.resource_tracker import main", "multiprocessing.forkserver import main")


def _mp_helper_of(proc: psutil.Process, me: psutil.Process) -> bool:
    try:
        cmd = " ".join(proc.cmdline())
        return proc.ppid() == me.pid and any(h in cmd for h in _MP_HELPERS)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def _template_of_an_older_process(proc: psutil.Process, before: set[int]) -> bool:
    """A fork-server template lives as long as the actor that owns it: one owned by a
    process older than the test (a module-scoped kernel) is that process's, not the
    test's. (Templates dying with their owner is tested in test_forkserver.)"""
    try:
        return testing.is_fork_server(proc) and proc.ppid() in before
    except psutil.NoSuchProcess:
        return False


def _leftovers(since: float, before: set[int]) -> list[psutil.Process]:
    """Descendants of this process, and actor processes anywhere, born during the test."""
    me = psutil.Process()
    found = {p.pid: p for p in me.children(recursive=True) if not _mp_helper_of(p, me)}
    for p in psutil.process_iter(["create_time"]):
        if (
            p.pid != me.pid
            and (p.info["create_time"] or 0) >= since - 0.05
            and _actor_like(p)
            and not _mp_helper_of(p, me)
        ):
            found.setdefault(p.pid, p)
    alive = []
    for pid, p in found.items():
        if pid in before or _template_of_an_older_process(p, before):
            continue
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except psutil.NoSuchProcess:
            pass
    return alive


def live_actor_processes_since(since: float, before: set[int], wait: float = 5.0) -> list[psutil.Process]:
    deadline = time.monotonic() + wait
    while True:
        left = _leftovers(since, before)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


@pytest.fixture(autouse=True)
def no_leftover_processes(request):
    """Fail the test if any process it started outlives it (and kill those)."""
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    since = time.time()
    yield
    left = live_actor_processes_since(since, before)
    if left:
        desc = [f"{p.pid}: {' '.join(p.cmdline())[:120]}" for p in left if p.is_running()]
        for p in left:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        pytest.fail(f"test left {len(desc)} process(es) behind: {desc}")


@pytest.fixture
def reg():
    """Root kwargs for a tree alone on this host (its own registry socket)."""
    return {"registry_addrs": [testing.private_registry_addr()]}
