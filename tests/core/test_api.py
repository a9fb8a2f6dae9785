"""The API contract (/work/shared/API.md), walked line by line: every name, every call
shape (keyword names and defaults) and, where behaviour is promised, the behaviour with
real actors.

The detailed behaviour lives in the module test files; this file is the one place that
says "a tractor user's call still works" for each line of the contract.
"""

from __future__ import annotations

import inspect
import os
import socket
import threading

import pytest
import trio

import notebook_actors as na
from notebook_actors import log, msg, to_asyncio, trionics
from notebook_actors._portal import LocalPortal

TIMEOUT = 60


def params_of(fn) -> dict[str, object]:
    """{name: default} of a callable's parameters (``inspect.Parameter.empty`` if none)."""
    return {name: p.default for name, p in inspect.signature(fn).parameters.items()}


def has_kwargs(fn) -> bool:
    return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())


# -- functions the actors below run ------------------------------------------------


def add(a: int, b: int) -> int:
    return a + b


def fail(text: str) -> None:
    raise ValueError(text)


async def count_to(n: int):
    for i in range(n):
        yield i


@na.context
async def echo(ctx: na.Context, greeting: str) -> str:
    await ctx.started(greeting)
    async with ctx.open_stream() as stream:
        async for value in stream:
            await stream.send(value * 2)
    return "echoed"


@na.context
async def misuses(ctx: na.Context) -> list[str]:
    """Try what the contract forbids in a callee; report each error class seen."""
    seen = []
    try:
        async with ctx.open_stream():
            pass
    except RuntimeError:
        seen.append("open_stream before started: RuntimeError")
    try:
        await ctx.started(threading.Lock())
    except TypeError:
        seen.append("unencodable started: TypeError")
    await ctx.started("ok")
    try:
        await ctx.started("again")
    except RuntimeError:
        seen.append("started twice: RuntimeError")
    return seen


@na.context
async def cancels_itself(ctx: na.Context) -> None:
    await ctx.started()
    await ctx.cancel()
    await trio.sleep_forever()


@na.context
async def closes_its_stream(ctx: na.Context) -> None:
    await ctx.started()
    async with ctx.open_stream() as stream:
        await stream.send("last")


@na.context
async def floods(ctx: na.Context, count: int) -> str:
    await ctx.started()
    async with ctx.open_stream(backpressure=False) as stream:
        try:
            for i in range(count):
                await stream.send(i)
        except na.StreamOverrun:
            return "overrun"
    return "no overrun"


async def run_nested() -> int:
    async with na.open_nursery() as n:
        portal = await n.run_in_actor(add, a=20, b=22)
        return await portal.result()


# -- Runtime and trees ----------------------------------------------------------------


class TestRuntimeSignatures:
    def test_open_root_actor_kwargs(self):
        """Test that open_root_actor takes API.md's keyword arguments with their defaults."""
        got = params_of(na.open_root_actor)
        want = {
            "name": "root",
            "arbiter_addr": None,
            "registry_addrs": None,
            "start_method": None,
            "debug_mode": False,
            "loglevel": None,
            "enable_modules": None,
            "infect_asyncio": False,
        }
        assert {k: got[k] for k in want} == want
        kinds = {p.kind for p in inspect.signature(na.open_root_actor).parameters.values()}
        assert kinds == {inspect.Parameter.KEYWORD_ONLY}

    def test_start_actor_and_run_in_actor_kwargs(self):
        """Test that start_actor and run_in_actor take API.md's keyword arguments and
        run_in_actor passes the rest to the function."""
        start = params_of(na.ActorNursery.start_actor)
        assert list(start)[:2] == ["self", "name"]
        want = {
            "enable_modules": None,
            "loglevel": None,
            "debug_mode": None,
            "infect_asyncio": False,
            "bind_addr": None,
        }
        assert {k: start[k] for k in want} == want
        run = params_of(na.ActorNursery.run_in_actor)
        assert list(run)[:2] == ["self", "fn"]
        want = {"name": None, "enable_modules": None, "loglevel": None, "infect_asyncio": False}
        assert {k: run[k] for k in want} == want
        assert has_kwargs(na.ActorNursery.run_in_actor)
        assert params_of(na.ActorNursery.cancel)["hard_kill"] is False

    def test_sync_entry_points(self):
        """Test that run(async_fn, *args, **root_kwargs) and run_daemon(enable_modules,
        **root_kwargs) have tractor's shapes."""
        run = inspect.signature(na.run).parameters
        assert [p.kind for p in run.values()] == [
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
        ]
        assert next(iter(params_of(na.run_daemon))) == "enable_modules" and has_kwargs(na.run_daemon)
        assert has_kwargs(na.open_nursery)

    def test_try_set_start_method(self):
        """Test that try_set_start_method accepts the documented backends and refuses others."""
        from notebook_actors._spawn import default_start_method

        before = default_start_method()
        try:
            for name in ("mp_spawn", "mp_forkserver", "trio"):
                assert na.try_set_start_method(name) == name
            with pytest.raises(ValueError):
                na.try_set_start_method("no_such_method")
        finally:
            na.try_set_start_method(before)

    def test_misuse_outside_a_runtime(self):
        """Test that current_actor() outside a runtime raises (a RuntimeError) and that
        open_nursery as a plain `with` raises RuntimeError."""
        with pytest.raises(RuntimeError):
            na.current_actor()
        assert issubclass(na.NoRuntime, RuntimeError)
        assert not na.is_root_process()
        with pytest.raises(RuntimeError):
            with na.open_nursery():
                pass


def test_run_passes_args_and_root_kwargs(reg):
    """Test that run(async_fn, *args, **root_kwargs) returns the function's result and
    gives the root kwargs to the root actor."""

    async def main(a: int, b: int) -> tuple:
        actor = na.current_actor()
        return a + b, actor.name, actor.loglevel

    assert na.run(main, 1, 2, name="api_run", loglevel="warning", **reg) == (3, "api_run", "warning")


def test_actor_attributes_and_daemon_portal(reg):
    """Test the Actor attributes, an implicit root from open_nursery(**root_kwargs), and
    a start_actor portal: run (function and string forms), run_from_ns('self', ...),
    channel, result() -> NoResult, ModuleNotExposed boxed, cancel_actor() -> True."""

    async def main() -> None:
        with trio.fail_after(TIMEOUT):
            async with na.open_nursery(name="api_root", **reg) as n:
                root = na.current_actor()
                assert root.name == "api_root" and na.is_root_process()
                name, uuid_str = root.uid
                assert (name, type(uuid_str)) == ("api_root", str) and uuid_str
                assert root.is_arbiter and not root.is_infected_aio()
                assert isinstance(root.accept_addr, str) and root.accept_addr
                assert hasattr(root, "loglevel")

                portal = await n.start_actor("api_daemon", enable_modules=[__name__])
                assert isinstance(portal, na.Portal)
                assert portal.channel.uid[0] == "api_daemon"
                assert await portal.run(add, a=1, b=2) == 3
                # start_actor returns before the child connects back (documented in
                # docs/runtime.md); after the first call the channel is up
                assert portal.channel.connected()
                assert await portal.run(__name__, "add", a=3, b=4) == 7
                assert await portal.run_from_ns(__name__, "add", a=5, b=6) == 11
                registry = await portal.run_from_ns("self", "get_registry")
                assert isinstance(registry, dict)
                with pytest.raises(na.NoResult):
                    await portal.result()
                with pytest.raises(na.RemoteActorError) as info:
                    await portal.run(inspect.signature)  # the inspect module is not enabled
                assert info.value.type is na.ModuleNotExposed
                assert await portal.cancel_actor() is True

    trio.run(main)


def test_run_in_actor_result_names_and_nesting(reg):
    """Test that run_in_actor names the actor after the function by default, that
    result() is cached, and that a child may open its own nursery."""

    async def main() -> None:
        with trio.fail_after(TIMEOUT):
            async with na.open_nursery(**reg) as n:
                plain = await n.run_in_actor(add, a=1, b=1)
                named = await n.run_in_actor(run_nested, name="nester")
                assert plain.channel.uid[0] == "add"
                assert named.channel.uid[0] == "nester"
                assert await plain.result() == 2
                assert await plain.result() == 2
                assert await named.result() == 42

    trio.run(main)


def test_one_failure_is_itself_several_are_a_multierror(reg):
    """Test one-cancels-all: one failing child raises its RemoteActorError (type, uid
    first in str(), traceback text), several raise a MultiError of them."""

    async def one() -> None:
        async with na.open_nursery(**reg) as n:
            await n.run_in_actor(fail, text="alone")

    async def two() -> None:
        async with na.open_nursery(**reg) as n:
            await n.run_in_actor(fail, name="fail_a", text="first")
            await n.run_in_actor(fail, name="fail_b", text="second")

    with pytest.raises(na.RemoteActorError) as info:
        trio.run(one)
    err = info.value
    assert err.type is ValueError
    assert str(err).startswith(repr(err.src_uid)) and err.src_uid[0] == "fail"
    assert "alone" in err.msgdata["tb_str"] and "raise ValueError" in err.msgdata["tb_str"]

    with pytest.raises(na.MultiError) as group:
        trio.run(two)
    assert issubclass(na.MultiError, BaseExceptionGroup)
    assert sorted(e.src_uid[0] for e in group.value.exceptions) == ["fail_a", "fail_b"]
    assert all(e.type is ValueError for e in group.value.exceptions)


def test_nursery_cancel_and_cancelled(reg):
    """Test that ActorNursery.cancel(hard_kill=False) ends its daemons and sets .cancelled."""

    async def main() -> None:
        with trio.fail_after(TIMEOUT):
            async with na.open_nursery(**reg) as n:
                portal = await n.start_actor("api_cancelled")
                assert not n.cancelled
                await n.cancel(hard_kill=False)
                assert n.cancelled
                assert not portal.channel.connected()

    trio.run(main)


# -- Portals, contexts and streams ------------------------------------------------------


class TestContextSignatures:
    def test_open_stream_defaults(self):
        """Test that ctx.open_stream takes backpressure=True, msg_buffer_size=None,
        allow_overruns=False."""
        got = params_of(na.Context.open_stream)
        assert {k: got[k] for k in ("backpressure", "msg_buffer_size", "allow_overruns")} == {
            "backpressure": True,
            "msg_buffer_size": None,
            "allow_overruns": False,
        }
        assert params_of(na.Context.started)["value"] is None

    def test_stream_without_ctx_is_a_type_error(self):
        """Test that @stream refuses a function without a ctx parameter, saying so."""

        async def no_ctx(n):  # pragma: no cover - never called
            yield n

        with pytest.raises(TypeError, match="ctx"):
            na.stream(no_ctx)

    def test_portal_call_shapes(self):
        """Test that the Portal methods take the documented arguments."""
        assert list(params_of(na.Portal.run))[:2] == ["self", "fn"] and has_kwargs(na.Portal.run)
        assert list(params_of(na.Portal.run_from_ns))[1:3] == ["namespace_path", "function_name"]
        assert has_kwargs(na.Portal.open_stream_from) and has_kwargs(na.Portal.open_context)
        for name in ("run", "run_from_ns", "result", "cancel_actor"):
            assert inspect.iscoroutinefunction(getattr(na.Portal, name)), name


def test_streams_and_contexts(reg):
    """Test open_stream_from, open_context -> (ctx, first), a two-way stream, ctx.chan,
    ctx.result(), subscribe(), the end of iteration when the peer closes, and that
    sending on a closed stream raises trio.ClosedResourceError."""

    async def main() -> None:
        with trio.fail_after(TIMEOUT):
            async with na.open_nursery(**reg) as n:
                portal = await n.start_actor("api_streams", enable_modules=[__name__])
                async with portal.open_stream_from(count_to, n=4) as stream:
                    assert [v async for v in stream] == [0, 1, 2, 3]

                async with portal.open_context(echo, greeting="hi") as (ctx, first):
                    assert first == "hi" and ctx.chan is portal.channel
                    assert not ctx.cancel_called
                    async with ctx.open_stream() as stream:
                        await stream.send(1)
                        assert await stream.receive() == 2
                        async with stream.subscribe() as sub:
                            await stream.send(2)
                            assert await sub.receive() == 4
                    with pytest.raises(trio.ClosedResourceError):
                        await stream.send(3)
                    assert await ctx.result() == "echoed"

                async with portal.open_context(closes_its_stream) as (ctx, _):
                    async with ctx.open_stream() as stream:
                        assert [v async for v in stream] == ["last"]
                        await stream.aclose()
                await portal.cancel_actor()

    trio.run(main)


def test_context_misuse_cancel_and_overrun(reg):
    """Test in a real callee: open_stream before started and started twice raise
    RuntimeError, an unencodable started value raises TypeError in the sender; a callee
    cancel raises ContextCancelled with msgdata['tb_str'] in the caller; a sender that
    outruns a reader with backpressure=False gets StreamOverrun."""

    async def main() -> None:
        with trio.fail_after(TIMEOUT):
            async with na.open_nursery(**reg) as n:
                portal = await n.start_actor("api_ctx", enable_modules=[__name__])
                async with portal.open_context(misuses) as (ctx, first):
                    assert first == "ok"
                assert await ctx.result() == [
                    "open_stream before started: RuntimeError",
                    "unencodable started: TypeError",
                    "started twice: RuntimeError",
                ]

                with pytest.raises(na.ContextCancelled) as info:
                    async with portal.open_context(cancels_itself):
                        pass
                assert info.value.msgdata["tb_str"]
                assert info.value.canceller == portal.channel.uid

                async with portal.open_context(floods, count=1000) as (ctx, _):
                    async with ctx.open_stream(msg_buffer_size=8):
                        assert await ctx.result() == "overrun"
                await portal.cancel_actor()

    trio.run(main)


def test_far_end_cancel_interrupts_the_callers_block(reg):
    """Test that a callee cancelling its context interrupts the caller's block, which
    then raises ContextCancelled (tractor's behaviour)."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("api_interrupt", enable_modules=[__name__])
            try:
                with pytest.raises(na.ContextCancelled):
                    async with portal.open_context(cancels_itself):
                        with trio.fail_after(5):  # hang guard: the gap shows as TooSlowError
                            await trio.sleep_forever()
            finally:
                await portal.cancel_actor()

    trio.run(main)


# -- Discovery --------------------------------------------------------------------------


def test_discovery(reg):
    """Test find_actor (Portal or None), wait_for_actor, query_actor (address or None)
    and get_arbiter/get_registry (an in-process portal in the registry's own actor)."""

    async def main() -> None:
        with trio.fail_after(TIMEOUT):
            async with na.open_nursery(**reg) as n:
                portal = await n.start_actor("api_found", enable_modules=[__name__])
                async with na.wait_for_actor("api_found") as found:
                    assert found.channel.uid == portal.channel.uid
                async with na.find_actor("api_found") as found:
                    assert await found.run(add, a=2, b=2) == 4
                async with na.find_actor("api_nobody") as nobody:
                    assert nobody is None
                assert isinstance(await na.query_actor("api_found"), str)
                assert await na.query_actor("api_nobody") is None
                async with na.get_arbiter(**reg) as registry:
                    assert isinstance(registry, LocalPortal)
                async with na.get_registry(**reg) as registry:
                    assert isinstance(registry, LocalPortal)
                await portal.cancel_actor()

    trio.run(main)


def test_get_arbiter_raises_oserror_when_nothing_listens(reg):
    """Test that get_arbiter(host, port) raises OSError when no registry listens there."""
    with socket.socket() as sock:  # a port that was free a moment ago, now closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    async def main() -> None:
        async with na.open_root_actor(**reg):
            with pytest.raises(OSError):
                async with na.get_arbiter("127.0.0.1", port):
                    pass

    trio.run(main)


# -- Debugging, asyncio, trionics, errors, logging -------------------------------------


def test_debugging_names():
    """Test that breakpoint/pause are coroutine functions and post_mortem exists."""
    assert inspect.iscoroutinefunction(na.breakpoint)
    assert na.pause is na.breakpoint
    assert callable(na.post_mortem)


def test_asyncio_and_trionics_call_shapes():
    """Test the documented call shapes of to_asyncio and trionics."""
    assert inspect.iscoroutinefunction(to_asyncio.run_task) and has_kwargs(to_asyncio.run_task)
    assert has_kwargs(to_asyncio.open_channel_from)
    assert to_asyncio.LinkedTaskChannel and na.AsyncioCancelled
    assert list(params_of(trionics.broadcast_receiver))[:2] == ["recv_chan", "max_buffer_size"]
    assert trionics.BroadcastReceiver and issubclass(trionics.Lagged, Exception)
    mocm = params_of(trionics.maybe_open_context)
    assert list(mocm)[:3] == ["acm_func", "kwargs", "key"] and mocm["key"] is None
    assert list(params_of(trionics.gather_contexts)) == ["managers"]
    cluster = params_of(trionics.open_actor_cluster)
    want = {"count": None, "names": None, "start_method": None, "hard_kill": False}
    assert next(iter(cluster)) == "modules" and {k: cluster[k] for k in want} == want


def test_error_types():
    """Test the documented error classes and their bases (what `except` clauses catch)."""
    assert issubclass(na.ContextCancelled, na.RemoteActorError)
    assert issubclass(na.ModuleNotExposed, ModuleNotFoundError)
    assert issubclass(na.TransportClosed, trio.ClosedResourceError)
    assert issubclass(na.MultiError, ExceptionGroup)
    for cls in (na.StreamOverrun, na.NoResult):
        assert issubclass(cls, Exception)


def test_namespace_path_names_a_function_and_splits_back():
    """Test that msg.NamespacePath is tractor's 'module:function' address of a function."""
    path = msg.NamespacePath.from_ref(os.path.join)
    assert path == "posixpath:join" and isinstance(path, str)
    assert path.to_tuple() == ("posixpath", "join")


def test_logging_helpers():
    """Test that log.get_logger(name) and log.get_console_log(level) return loggers
    (adapters of stdlib loggers, as tractor's are)."""
    import logging

    for logger in (log.get_logger("api_test"), log.get_console_log("warning")):
        assert isinstance(logger, logging.LoggerAdapter) and isinstance(logger.logger, logging.Logger)
        assert callable(logger.info) and callable(logger.runtime)
