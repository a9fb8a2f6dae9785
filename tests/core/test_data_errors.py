"""Errors' payloads between real actor processes: an exception carrying data (a numpy
array in its args, attributes msgpack cannot encode) arrives whole as
``RemoteActorError.exception``, also relayed through a middle actor; one that does
not pickle still arrives as its type, message and traceback; a typed-only context
neither sends nor loads it."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import trio

import notebook_actors as na


class FitFailed(Exception):
    """An exception of ours with data in its attributes."""

    def __init__(self, message: str, weights: np.ndarray, step: int) -> None:
        super().__init__(message, weights, step)
        self.weights, self.step = weights, step


def fail_with_array(n: int) -> None:
    raise ValueError("bad rows", np.arange(n))


def fail_with_attributes() -> None:
    raise FitFailed("diverged", np.eye(3), step=7)


def fail_with_a_lock() -> None:
    exc = RuntimeError("holds a lock")
    exc.lock = threading.Lock()  # cannot be pickled: the error still travels, without it
    raise exc


async def fail_through_a_child() -> None:
    """Start a child that fails, and let its error pass through this actor."""
    async with na.open_nursery() as n:
        portal = await n.start_actor("leaf", enable_modules=[__name__])
        await portal.run(fail_with_attributes)


@na.context(typed_only=True)
async def typed_fails(ctx) -> None:
    await ctx.started()
    raise FitFailed("typed only", np.ones(2), step=1)


@na.context
async def plain_fails(ctx) -> None:
    await ctx.started()
    raise FitFailed("plain", np.ones(2), step=2)


def _run(body, reg):
    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("errors", enable_modules=[__name__])
            with trio.fail_after(60):
                await body(portal)
            await portal.cancel_actor()

    trio.run(main)


def test_an_exception_carrying_an_array_arrives_whole(reg):
    """Test that a ValueError with an array in its args, and an exception class of
    ours with arrays in its attributes, arrive as themselves: args and attributes
    rebuilt, next to the usual type, message and traceback (large arrays too)."""

    async def body(portal) -> None:
        with pytest.raises(na.RemoteActorError) as info:
            await portal.run(fail_with_array, n=5)
        err = info.value
        assert err.type is ValueError and "bad rows" in str(err)
        assert type(err.exception) is ValueError and err.exception.args[0] == "bad rows"
        assert np.array_equal(err.exception.args[1], np.arange(5))
        with pytest.raises(na.RemoteActorError) as info:
            await portal.run(fail_with_array, n=1_000_000)
        assert np.array_equal(info.value.exception.args[1], np.arange(1_000_000))
        with pytest.raises(na.RemoteActorError) as info:
            await portal.run(fail_with_attributes)
        exc = info.value.exception
        assert type(exc) is FitFailed and exc.step == 7 and np.array_equal(exc.weights, np.eye(3))
        assert "fail_with_attributes" in info.value.tb_str

    _run(body, reg)


def test_an_exception_that_does_not_pickle_still_arrives(reg):
    """Test that an exception holding a lock arrives with its type, message and
    traceback, without the exception itself, and the actor goes on serving."""

    async def body(portal) -> None:
        with pytest.raises(na.RemoteActorError) as info:
            await portal.run(fail_with_a_lock)
        assert info.value.type is RuntimeError and "holds a lock" in str(info.value)
        assert info.value.exception is None
        with pytest.raises(na.RemoteActorError) as info:
            await portal.run(fail_with_array, n=3)
        assert np.array_equal(info.value.exception.args[1], np.arange(3))

    _run(body, reg)


def test_a_relayed_error_keeps_its_exception(reg):
    """Test that an error raised in a grandchild and relayed by its parent reaches
    the root with the original exception and its data, and the whole relay path."""

    async def body(portal) -> None:
        with pytest.raises(na.RemoteActorError) as info:
            await portal.run(fail_through_a_child)
        err = info.value
        while err.exception is not None and isinstance(err.exception, na.RemoteActorError):
            err = err.exception  # a nursery may box it once more on its way out
        assert err.type_name == "FitFailed" and len(err.relay_path) >= 2
        assert type(err.exception) is FitFailed and np.array_equal(err.exception.weights, np.eye(3))

    _run(body, reg)


def test_typed_only_contexts_do_not_ship_an_errors_pickle(reg):
    """Test that a typed-only context's error arrives without its pickled exception,
    whether the failing side is typed-only (it sends none) or only the caller is (it
    loads none), with type and message intact; an ordinary context's comes whole."""

    async def body(portal) -> None:
        cases = [
            (typed_fails, "typed only"),  # both sides typed-only
            (typed_fails.__wrapped__, "typed only"),  # only the failing side
            (na.context(typed_only=True)(plain_fails), "plain"),  # only the caller
        ]
        for fn, text in cases:
            with pytest.raises(na.RemoteActorError) as info:
                async with portal.open_context(fn) as (ctx, _):
                    await ctx.result()
            assert info.value.type_name == "FitFailed" and text in str(info.value)
            assert info.value.exception is None, fn
        with pytest.raises(na.RemoteActorError) as info:
            async with portal.open_context(plain_fails) as (ctx, _):
                await ctx.result()
        assert type(info.value.exception) is FitFailed and info.value.exception.step == 2

    _run(body, reg)
