"""trio helpers: maybe_open_context (one shared resource per key per actor) and
gather_contexts (enter several context managers concurrently)."""

from __future__ import annotations

from contextlib import asynccontextmanager

import pytest
import trio
import trio.lowlevel
import trio.testing

import notebook_actors as na
from notebook_actors import testing, trionics

HANG_GUARD = 30


class Resource:
    """Counts how often it was opened and closed, and by whom."""

    def __init__(self) -> None:
        self.opened = 0
        self.closed = 0
        self.events: list[str] = []

    @asynccontextmanager
    async def open(self, name: str = "r", fail_enter: bool = False, fail_exit: bool = False):
        await trio.lowlevel.checkpoint()
        if fail_enter:
            raise ValueError(f"cannot open {name}")
        self.opened += 1
        self.events.append(f"open {name}")
        try:
            yield f"{name}#{self.opened}"
        finally:
            self.closed += 1
            self.events.append(f"close {name}")
            if fail_exit:
                raise OSError(f"cannot close {name}")


def run(fn, *args):
    async def main():
        with trio.fail_after(HANG_GUARD):
            return await fn(*args)

    return trio.run(main)


class TestMaybeOpenContext:
    def test_one_instance_shared_then_torn_down_by_last_user(self):
        """Test that concurrent users with one key share one instance (first: cache miss,
        others: hits) and that it closes only when the last user leaves."""
        res = Resource()
        seen: list[tuple[bool, str]] = []

        async def user(leave: trio.Event, task_status=trio.TASK_STATUS_IGNORED):
            async with trionics.maybe_open_context(res.open, kwargs={"name": "db"}) as (hit, value):
                seen.append((hit, value))
                task_status.started()
                await leave.wait()

        async def main():
            leaves = [trio.Event() for _ in range(3)]
            async with trio.open_nursery() as n:
                for leave in leaves:
                    await n.start(user, leave)
                assert (res.opened, res.closed) == (1, 0)
                leaves[0].set()
                leaves[1].set()
                await trio.testing.wait_all_tasks_blocked()
                assert res.closed == 0  # one user is still inside
                leaves[2].set()
            return res.closed

        assert run(main) == 1
        assert seen == [(False, "db#1"), (True, "db#1"), (True, "db#1")]

    def test_keys_separate_instances_and_reopen_after_teardown(self):
        """Test that different kwargs or keys give different instances and that asking
        again after the last user left opens a fresh one."""
        res = Resource()

        async def main():
            async with trionics.maybe_open_context(res.open, kwargs={"name": "a"}) as (hit_a, a):
                async with trionics.maybe_open_context(res.open, kwargs={"name": "b"}) as (hit_b, b):
                    async with trionics.maybe_open_context(res.open, kwargs={"name": "a"}, key="other") as (hit_c, c):
                        pass
            async with trionics.maybe_open_context(res.open, kwargs={"name": "a"}) as (hit_d, d):
                pass
            return [(hit_a, a), (hit_b, b), (hit_c, c), (hit_d, d)]

        assert run(main) == [(False, "a#1"), (False, "b#2"), (False, "a#3"), (False, "a#4")]
        assert res.closed == 4

    def test_enter_error_reaches_every_waiting_user_and_is_not_cached(self):
        """Test that a failing enter raises in every user waiting for it and that the next
        ask tries again."""
        res = Resource()
        errors: list[str] = []

        async def user():
            try:
                async with trionics.maybe_open_context(res.open, kwargs={"name": "x", "fail_enter": True}):
                    pass
            except ValueError as exc:
                errors.append(str(exc))

        async def main():
            async with trio.open_nursery() as n:
                n.start_soon(user)
                n.start_soon(user)
            await user()

        run(main)
        assert errors == ["cannot open x"] * 3

    def test_exit_error_goes_to_the_last_user(self):
        """Test that an error while tearing the resource down is raised in the last user."""
        res = Resource()

        async def main():
            with pytest.raises(OSError, match="cannot close y"):
                async with trionics.maybe_open_context(res.open, kwargs={"name": "y", "fail_exit": True}):
                    pass

        run(main)

    def test_cancelled_first_user_does_not_leak_the_resource(self):
        """Test that a user cancelled while the resource is being entered leaves nothing
        open behind."""
        entering = trio.Event()
        state = {"exited": False}

        @asynccontextmanager
        async def slow():
            entering.set()
            try:
                await trio.sleep_forever()
                yield "never"
            finally:
                state["exited"] = True

        async def main():
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as n:
                    n.start_soon(_enter_and_yield, slow)
                    await entering.wait()
                    scope.cancel()
            return state["exited"]

        assert run(main) is True

    def test_unhashable_kwargs_without_key_refused(self):
        """Test that unhashable kwargs without key= raise TypeError showing the key= fix."""

        async def main():
            with pytest.raises(TypeError, match="pass key="):
                async with trionics.maybe_open_context(Resource().open, kwargs={"name": ["list"]}):
                    pass

        run(main)

    def test_shared_within_an_actor_process(self):
        """Test that in a child actor, tasks serving separate RPC calls share one instance."""
        reg = {"registry_addrs": [testing.private_registry_addr()]}

        async def main():
            async with na.open_nursery(**reg) as an:
                portal = await an.start_actor("sharer", enable_modules=[__name__])
                async with trio.open_nursery() as n:
                    results = []

                    async def call():
                        results.append(await portal.run(hold_shared_counter, users=3))

                    for _ in range(3):
                        n.start_soon(call)
                opened = await portal.run(shared_counter_opened)
                await an.cancel()
            return sorted(results), opened

        results, opened = run(main)
        assert results == [False, True, True]
        assert opened == 1


async def _enter_and_yield(acm_fn):
    async with trionics.maybe_open_context(acm_fn):
        pass


# -- used inside a child actor ----------------------------------------------------------------
_opened = 0
_arrivals = None


@asynccontextmanager
async def _counter():
    global _opened
    _opened += 1
    yield _opened


async def hold_shared_counter(users: int) -> bool:
    """Hold the shared counter until ``users`` RPC tasks all hold it; return cache_hit."""
    global _arrivals
    if _arrivals is None:
        _arrivals = {"n": 0, "all_in": trio.Event()}
    async with trionics.maybe_open_context(_counter) as (hit, _):
        _arrivals["n"] += 1
        if _arrivals["n"] == users:
            _arrivals["all_in"].set()
        await _arrivals["all_in"].wait()
    return hit


def shared_counter_opened() -> int:
    return _opened


class TestGatherContexts:
    def test_enters_all_yields_in_order_exits_all(self):
        """Test that gather_contexts yields every value in order and exits all of them."""
        res = Resource()

        async def main():
            async with trionics.gather_contexts([res.open(name) for name in "abc"]) as values:
                assert res.closed == 0
                return values

        values = run(main)
        assert [v.split("#")[0] for v in values] == ["a", "b", "c"]
        assert res.closed == 3

    def test_enters_concurrently(self):
        """Test that managers are entered concurrently: each waits for all the others to
        have started entering, which would deadlock if they were entered one by one."""
        started = {"n": 0}
        everyone = trio.Event()

        @asynccontextmanager
        async def rendezvous(i: int):
            started["n"] += 1
            if started["n"] == 3:
                everyone.set()
            await everyone.wait()
            yield i

        async def main():
            async with trionics.gather_contexts([rendezvous(i) for i in range(3)]) as values:
                return values

        assert run(main) == (0, 1, 2)

    def test_enter_failure_exits_the_others_and_raises(self):
        """Test that one manager failing to enter exits the entered ones and raises its
        error unwrapped."""
        res = Resource()

        async def main():
            with pytest.raises(ValueError, match="cannot open bad"):
                async with trionics.gather_contexts(
                    [res.open("ok1"), res.open("bad", fail_enter=True), res.open("ok2")]
                ):
                    pytest.fail("the body must not run")

        run(main)
        assert res.opened == res.closed == 2

    def test_body_error_propagates_unwrapped(self):
        """Test that an error in the block propagates as itself (not in an exception group)
        after every manager was exited."""
        res = Resource()

        async def main():
            with pytest.raises(KeyError):
                async with trionics.gather_contexts([res.open("a"), res.open("b")]):
                    raise KeyError("body")

        run(main)
        assert res.closed == 2

    def test_empty(self):
        """Test that gather_contexts of no managers yields an empty tuple."""

        async def main():
            async with trionics.gather_contexts([]) as values:
                return values

        assert run(main) == ()

    def test_exit_errors_raised_after_block(self):
        """Test that errors while exiting are raised after the block (several as a group)."""
        res = Resource()

        async def main():
            with pytest.raises(ExceptionGroup) as info:
                async with trionics.gather_contexts(
                    [res.open("a", fail_exit=True), res.open("b", fail_exit=True), res.open("c")]
                ):
                    pass
            return sorted(str(e) for e in info.value.exceptions)

        assert run(main) == ["cannot close a", "cannot close b"]
