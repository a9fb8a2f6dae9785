"""User code that misbehaves, everywhere a user can put code in an actor: each case
gives the caller a clear error, and the actor survives (the next call works)."""

from __future__ import annotations

import os
import threading

import pytest
import trio
import trio.lowlevel

import notebook_actors as na

pytestmark = pytest.mark.usefixtures("no_fd_leak")


class BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken too")


def ping() -> int:
    return os.getpid()


def return_unencodable() -> object:
    return threading.Lock()


async def async_return_unencodable() -> object:
    await trio.lowlevel.checkpoint()
    return threading.Lock()


def raise_bad_str() -> None:
    raise BadStr("never shown")


def raise_unimportable() -> None:
    # a class the caller cannot import: its module exists nowhere
    cls = type("Phantom", (Exception,), {"__module__": "no_such_module_anywhere"})
    raise cls("from a class nobody else has")


async def yield_unencodable():
    yield 1
    yield threading.Lock()


async def raise_on_close():
    try:
        for i in range(1000):
            yield i
    finally:
        raise ValueError("cleanup failed in the generator")


@na.context
async def never_started(ctx) -> str:
    return "returned without started"


@na.context
async def raise_before_started(ctx) -> None:
    raise KeyError("before started")


@na.context
async def start_unencodable(ctx) -> None:
    await ctx.started(threading.Lock())


@na.context
async def return_unencodable_ctx(ctx) -> object:
    await ctx.started(1)
    return threading.Lock()


@na.context
async def hang_before_started(ctx) -> None:
    await trio.sleep_forever()


async def _survives(portal: na.Portal) -> None:
    assert await portal.run(ping) == await portal.run(ping) > 0


def _in_daemon(reg, body):
    """Run ``body(portal)`` against a fresh daemon; check it still answers after."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("user", enable_modules=[__name__])
            with trio.fail_after(60):
                await body(portal)
                await _survives(portal)
            await portal.cancel_actor()

    trio.run(main)


@pytest.mark.parametrize("fn", [return_unencodable, async_return_unencodable])
def test_unencodable_return_value(reg, fn):
    """Test that a return value the codec cannot encode is a TypeError for the caller,
    naming the function and the value's type."""

    async def body(portal):
        with pytest.raises(na.RemoteActorError) as info:
            await portal.run(fn)
        assert info.value.type is TypeError
        assert fn.__name__ in str(info.value) and "lock" in str(info.value)

    _in_daemon(reg, body)


def test_exception_whose_str_raises(reg):
    """Test that an exception whose __str__ raises still reaches the caller with its
    type name and a message saying str() failed."""

    async def body(portal):
        with pytest.raises(na.RemoteActorError) as info:
            await portal.run(raise_bad_str)
        assert info.value.type is BadStr
        assert "str() of this BadStr raised RuntimeError" in str(info.value)

    _in_daemon(reg, body)


def test_exception_class_the_caller_cannot_import(reg):
    """Test that an error whose class the caller cannot import arrives with its name,
    module, message and traceback text (``.type`` is None)."""

    async def body(portal):
        with pytest.raises(na.RemoteActorError) as info:
            await portal.run(raise_unimportable)
        err = info.value
        assert err.type is None
        assert err.type_name == "Phantom"
        assert "from a class nobody else has" in str(err)
        assert "raise_unimportable" in err.tb_str

    _in_daemon(reg, body)


def test_generator_yielding_an_unencodable_value(reg):
    """Test that a stream whose generator yields an unencodable value gives the caller
    the values before it, then a TypeError."""

    async def body(portal):
        got = []
        with pytest.raises(na.RemoteActorError) as info:
            async with portal.open_stream_from(yield_unencodable) as stream:
                async for v in stream:
                    got.append(v)
        assert got == [1]
        assert info.value.type is TypeError

    _in_daemon(reg, body)


def test_generator_that_raises_on_close(reg):
    """Test that a generator whose cleanup raises, closed early by the caller, surfaces
    that error (not silently dropped) and the actor survives."""

    async def body(portal):
        with pytest.raises(na.RemoteActorError) as info:
            async with portal.open_stream_from(raise_on_close) as stream:
                async for v in stream:
                    if v == 3:
                        break
        assert info.value.type is ValueError
        assert "cleanup failed" in str(info.value)

    _in_daemon(reg, body)


def test_context_that_returns_without_started(reg):
    """Test that a @context function that returns without calling started gives the
    caller a RuntimeError that says so."""

    async def body(portal):
        with pytest.raises(na.RemoteActorError) as info:
            async with portal.open_context(never_started):
                pytest.fail("the context should not open")
        assert info.value.type is RuntimeError
        assert "without calling `await ctx.started()`" in str(info.value)

    _in_daemon(reg, body)


def test_context_that_raises_before_started(reg):
    """Test that a @context function raising before started fails open_context with
    that error."""

    async def body(portal):
        with pytest.raises(na.RemoteActorError) as info:
            async with portal.open_context(raise_before_started):
                pytest.fail("the context should not open")
        assert info.value.type is KeyError

    _in_daemon(reg, body)


def test_context_that_never_starts_can_be_cancelled(reg):
    """Test that a caller waiting on a @context that never calls started can give up
    (cancel scope): the callee is cancelled and the actor keeps serving."""

    async def body(portal):
        with trio.move_on_after(0.2) as scope:  # the caller's own deadline, not a timing check
            async with portal.open_context(hang_before_started):
                pytest.fail("the context should not open")
        assert scope.cancelled_caught

    _in_daemon(reg, body)


@pytest.mark.parametrize("fn", [start_unencodable, return_unencodable_ctx])
def test_context_with_unencodable_started_or_result(reg, fn):
    """Test that an unencodable value passed to started, or returned by a context,
    is a TypeError for the caller."""

    async def body(portal):
        with pytest.raises(na.RemoteActorError) as info:
            async with portal.open_context(fn) as (ctx, _first):
                await ctx.result()
        assert info.value.type is TypeError

    _in_daemon(reg, body)
