"""Randomized fault injection: random trees, streams between random pairs of actors,
and injected errors, cancellations and SIGKILLs at random moments. Every round must
end with no process left and no fd leaked, and every injected fault must surface
somewhere (an error naming it reaches the root): nothing is swallowed.

Reproduce a failure with the seed it prints: ``NOTEBOOK_ACTORS_FAULT_SEED=<seed>``.
Short by default (a few rounds, part of ``make test``); the soak form runs rounds
until ``NOTEBOOK_ACTORS_SOAK_SECONDS`` have passed.
"""

from __future__ import annotations

import gc
import os
import random
import time
from dataclasses import dataclass, field

import pytest
import trio

import notebook_actors as na
from notebook_actors import testing
from notebook_actors._exceptions import HandshakeError
from notebook_actors.testing import _faults
from notebook_actors.testing._faults import FAULTS, open_fds

ROUNDS = int(os.environ.get("NOTEBOOK_ACTORS_FAULT_ROUNDS", "3"))
SOAK_SECONDS = float(os.environ.get("NOTEBOOK_ACTORS_SOAK_SECONDS", "0"))
#: a bound, not a delay
GONE_WITHIN = 5.0
#: errors a fault may legitimately cause in the actors that saw it
FAULT_ERRORS = (na.RemoteActorError, na.TransportClosed, na.MultiError, HandshakeError)


@dataclass
class Round:
    """What one round did and saw."""

    rnd: random.Random
    tag: str
    parents: dict[str, list[str]] = field(default_factory=dict)  # top-level -> children
    pids: dict[str, int] = field(default_factory=dict)
    killed: list[str] = field(default_factory=list)
    markers: list[str] = field(default_factory=list)
    surfaced: list[BaseException] = field(default_factory=list)
    branch_ended: dict[str, trio.Event] = field(default_factory=dict)
    #: processes below this one before the round (multiprocessing's helpers of other tests)
    already_running: set[int] = field(default_factory=lambda: {p.pid for p in testing.actor_descendants()})
    log: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [*self.parents, *(c for kids in self.parents.values() for c in kids)]

    def below(self, name: str) -> list[str]:
        return [name, *self.parents.get(name, [])]


def _texts(exc: BaseException) -> list[str]:
    """Every message and remote traceback inside ``exc`` (groups, causes)."""
    out = [f"{type(exc).__name__}: {exc}"]
    if isinstance(exc, na.RemoteActorError):
        out.append(exc.tb_str)
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            out += _texts(sub)
    if exc.__cause__ is not None:
        out += _texts(exc.__cause__)
    return out


async def _build_tree(n: na.ActorNursery, rd: Round, task_n: trio.Nursery) -> None:
    for i in range(rd.rnd.randint(1, 3)):
        top = f"{rd.tag}a{i}"
        rd.parents[top] = [f"{top}c{j}" for j in range(rd.rnd.randint(0, 2))]
        portal = await n.start_actor(top, enable_modules=[FAULTS])
        rd.pids[top] = await portal.run(_faults.getpid)
        if rd.parents[top]:
            rd.pids.update(await task_n.start(_hold_branch, portal, rd.parents[top], rd))
    for name in rd.names:  # a child registers concurrently with its start: wait for it
        async with na.wait_for_actor(name):
            pass


async def _hold_branch(portal: na.Portal, names: list[str], rd: Round, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Keep a middle actor's branch open; record whatever error ends it."""
    ended = rd.branch_ended.setdefault(names[0].rsplit("c", 1)[0], trio.Event())
    try:
        async with portal.open_context(_faults.branch, names=names) as (ctx, pids):
            task_status.started(pids)
            await ctx.result()
    except FAULT_ERRORS as exc:
        rd.surfaced.append(exc)
    finally:
        ended.set()


async def _inject(rd: Round, i: int) -> None:
    """One random action: a stream between a random pair, an error, a cancellation or
    a kill; whatever error it gets is recorded."""
    await trio.sleep(rd.rnd.uniform(0, 0.1))
    alive = [name for name in rd.names if name not in rd.killed]
    if not alive:
        return
    kind = rd.rnd.choice(["stream", "stream", "error", "cancel", "kill"])
    src, dst = rd.rnd.choice(alive), rd.rnd.choice(alive)
    rd.log.append(f"{i}:{kind} {src}->{dst}")
    try:
        if kind == "kill":
            rd.killed.append(src)
            testing.kill_all([rd.pids[src]])  # gone already if a kill above took it
            return
        async with na.find_actor(src) as portal:
            if portal is None:
                return  # gone already: a kill took it (checked at the round's end)
            if kind == "stream":
                n = rd.rnd.randint(1, 200)
                assert await portal.run(_faults.relay, peer=dst, n=n) == n * (n - 1) // 2
            elif kind == "error":
                marker = f"{rd.tag}m{i}"
                with pytest.raises(na.RemoteActorError) as info:
                    await portal.run(_faults.raise_marked, marker=marker)
                if info.value.type is ValueError and marker in str(info.value):
                    rd.markers.append(marker)
                else:  # e.g. "shutting down": a kill elsewhere is tearing its branch down
                    rd.surfaced.append(info.value)
            elif kind == "cancel":
                with trio.move_on_after(rd.rnd.uniform(0, 0.05)):
                    await portal.run(_faults.relay, peer=dst, n=10**6)
                # the cancelled call did not break the actor
                assert await portal.run(_faults.getpid) == rd.pids[src]
    except FAULT_ERRORS as exc:
        rd.surfaced.append(exc)


async def _one_round(rd: Round) -> None:
    try:
        async with na.open_nursery(cancel_grace=1.0) as n:
            async with trio.open_nursery() as task_n:
                await _build_tree(n, rd, task_n)
                async with trio.open_nursery() as actions:
                    for i in range(rd.rnd.randint(3, 8)):
                        actions.start_soon(_inject, rd, i)
                # a killed child fails its branch: let that error arrive before this
                # side cancels the branch (the cancellation would win over it)
                for name in rd.killed:
                    parent = _parent_of(rd, name)
                    if parent is not None:
                        await rd.branch_ended[parent].wait()
                task_n.cancel_scope.cancel()  # close the branches from this side
            await n.cancel()
    except FAULT_ERRORS as exc:
        rd.surfaced.append(exc)
    _check_round(rd)


def _check_round(rd: Round) -> None:
    print(rd.tag, dict(rd.parents), rd.log, "surfaced:", [type(e).__name__ for e in rd.surfaced])
    # everything below a killed actor is gone, everything else was cancelled
    assert testing.wait_until_gone(list(rd.pids.values()), GONE_WITHIN) == [], rd.log
    born = [p.pid for p in testing.actor_descendants() if p.pid not in rd.already_running]
    assert testing.wait_until_gone(born, GONE_WITHIN) == [], rd.log
    text = "\n".join(t for exc in rd.surfaced for t in _texts(exc))
    for i, name in enumerate(rd.killed):  # every kill surfaced (its name, or its subtree's) ...
        # ... unless an earlier kill in its branch (a sibling's crash cancels it: the
        # kill may hit a process already exiting), a kill above it, or of another
        # top-level actor (which cancels the whole round: one-cancels-all) came first
        top = _parent_of(rd, name) or name
        masked = any(_parent_of(rd, k) == top or k == top for k in rd.killed[:i])
        masked = masked or top in rd.killed or any(k in rd.parents for k in rd.killed if k != name)
        assert masked or any(f"('{x}'," in text for x in rd.below(name)), (name, rd.log, text[:3000])
    if rd.killed:
        assert rd.surfaced, rd.log
    if not rd.killed:  # without a kill, no call may fail
        assert rd.surfaced == [], (rd.log, text[:3000])


def _parent_of(rd: Round, name: str) -> str | None:
    return next((top for top, kids in rd.parents.items() if name in kids), None)


async def _dump_if_hung(rd: Round) -> None:
    await trio.sleep(50)  # just before the hang guard fires: show where it waits
    print(f"round {rd.tag} hangs; actions {rd.log}; tasks:\n{_faults.task_tree()}")


def test_random_faults_end_clean_and_surface(request):
    """Test that random trees with random streams, errors, cancellations and kills end
    every round with no process and no fd left, and every kill and error surfaced."""
    seed = int(os.environ.get("NOTEBOOK_ACTORS_FAULT_SEED", random.randrange(2**32)))
    print(f"NOTEBOOK_ACTORS_FAULT_SEED={seed}")
    rnd = random.Random(seed)
    fds_before = open_fds()

    async def main() -> None:
        deadline = time.monotonic() + SOAK_SECONDS
        r = 0
        while r < ROUNDS or time.monotonic() < deadline:
            rd = Round(rnd, tag=f"r{r}")
            async with trio.open_nursery() as guard:
                guard.start_soon(_dump_if_hung, rd)
                with trio.fail_after(60):  # hang guard
                    await _one_round(rd)
                guard.cancel_scope.cancel()
            r += 1
        print(f"{r} rounds")

    try:
        na.run(main, registry_addrs=[testing.private_registry_addr()])
    except BaseException as exc:
        exc.add_note(f"reproduce with NOTEBOOK_ACTORS_FAULT_SEED={seed}")
        raise
    gc.collect()  # an fd only the collector frees is a reference cycle, not a leak (see conftest)
    leaked = {fd: t for fd, t in open_fds().items() if fds_before.get(fd) != t}
    assert leaked == {}, f"seed {seed}: fds leaked: {leaked}"
