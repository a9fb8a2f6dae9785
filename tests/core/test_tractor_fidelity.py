"""tractor 0.1.0a5's observable behaviours (issue 18), each checked with real actors
where an actor is involved: log levels, boxed RPC errors, contexts, streams, asyncio,
cancellation, discovery, and the names tractor programs import."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from contextlib import asynccontextmanager

import pytest
import trio
import trio.lowlevel
import trio.testing

import notebook_actors as tractor
from notebook_actors import log, testing, to_asyncio, trionics
from notebook_actors.experimental import msgpub
from notebook_actors.trionics import Lagged, broadcast_receiver

TIMEOUT = 60


def run(fn, *args):
    async def main():
        with trio.fail_after(TIMEOUT):
            return await fn(*args)

    return trio.run(main)


# -- functions the actors below run ------------------------------------------------------


def enabled_levels() -> list[str]:
    logger = log.get_logger("fidelity")
    logger.cancel("cancel-level line")  # the custom level methods exist in children too
    names = ("transport", "runtime", "cancel", "info")
    return [n for n in names if logger.isEnabledFor(log.level_number(n))]


@msgpub
async def counter(get_topics):
    i = 0
    while True:
        topic = "even" if i % 2 == 0 else "odd"
        if topic in get_topics():
            yield {topic: i}
        i += 1
        await trio.sleep(0.001)


@msgpub(tasks=["one", "two"])
async def two_tasks(get_topics, start: int = 0):
    yield {"doggy": start}
    yield {"doggy": start + 1}


@msgpub
async def three_then_done(get_topics):
    for i in range(3):
        yield {"t": i}


async def aio_fails(kind: str) -> None:
    await asyncio.sleep(0)
    if kind == "assert":
        raise AssertionError("asyncio says no")
    raise ExceptionGroup("two failures", [ValueError("a"), KeyError("b")])


async def run_task_fails(kind: str) -> None:
    await to_asyncio.run_task(aio_fails, kind=kind)


async def aio_channel(to_trio, from_trio, base: int) -> None:
    to_trio.send_nowait(base)
    to_trio.send_nowait(base + 1)
    await asyncio.sleep(0)
    raise AssertionError("the channel's task fails")


async def channel_fails() -> list[int]:
    seen = []
    try:
        async with to_asyncio.open_channel_from(aio_channel, base=10) as (first, chan):
            seen.append(first)
            async for value in chan:
                seen.append(value)
    except AssertionError:
        return seen
    raise RuntimeError("the asyncio task's AssertionError did not reach the trio side")


async def catches_group_and_reraises() -> None:
    try:
        await to_asyncio.run_task(aio_fails, kind="group")
    except ExceptionGroup as group:
        assert {type(e) for e in group.exceptions} == {ValueError, KeyError}
        raise


async def aio_sleeps_forever(to_trio, from_trio) -> None:
    to_trio.send_nowait(None)
    await asyncio.sleep(3600)


async def waits_on_asyncio() -> None:
    async with to_asyncio.open_channel_from(aio_sleeps_forever) as (_, _chan):
        testing.record("waiting", True)
        await trio.sleep_forever()


# -- log levels --------------------------------------------------------------------------


class TestLogLevels:
    @pytest.mark.parametrize("level", ["runtime", "RUNTIME", "Cancel", "transport", "PDB", "devx", "info"])
    def test_get_console_log_takes_tractors_levels_in_any_case(self, level):
        """Test that get_console_log accepts tractor's custom levels in any case and
        sets that level."""
        logger = log.get_console_log(level)
        assert logging.getLogger("notebook_actors").level == log.level_number(level)
        assert logger.isEnabledFor(log.level_number(level))

    def test_logger_has_a_method_per_custom_level(self, caplog):
        """Test that get_logger().runtime/.cancel/.transport/.pdb/.devx log at that level."""
        logger = log.get_logger("fidelity_methods")
        with caplog.at_level(1, logger="notebook_actors"):
            for name in ("transport", "runtime", "cancel", "pdb", "devx"):
                getattr(logger, name)("a %s line", name)
        assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
            (n.upper(), f"a {n} line") for n in ("transport", "runtime", "cancel", "pdb", "devx")
        ]
        assert log.level_number("transport") < logging.DEBUG < log.level_number("runtime")
        assert log.level_number("runtime") < log.level_number("cancel") < logging.INFO

    def test_add_log_level(self, caplog):
        """Test that add_log_level makes a name usable as a level and a logger method."""
        log.add_log_level("fidelity_trace", 3)
        logger = log.get_console_log("FIDELITY_TRACE", "fidelity_added")
        with caplog.at_level(1, logger="notebook_actors"):
            logger.fidelity_trace("traced")
        assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(3, "traced")]
        with pytest.raises(ValueError):
            log.add_log_level("info", 99)

    def test_unknown_level_is_one_clear_error(self):
        """Test that an unknown level name raises ValueError listing the known ones."""
        with pytest.raises(ValueError, match="runtime"):
            log.get_console_log("chatty")

    def test_loglevel_in_the_tree(self, reg):
        """Test that loglevel='RUNTIME' on the root and loglevel='cancel' on a child
        start them at those levels."""

        async def main():
            async with tractor.open_nursery(loglevel="RUNTIME", **reg) as n:
                assert enabled_levels() == ["runtime", "cancel", "info"]
                portal = await n.start_actor("logger", enable_modules=[__name__], loglevel="cancel")
                assert await portal.run(enabled_levels) == ["cancel", "info"]
                await portal.cancel_actor()
                with pytest.raises(ValueError, match="runtime"):
                    await n.start_actor("bad_level", loglevel="chatty")  # refused before spawning

        run(main)


# -- names tractor programs import -------------------------------------------------------


def test_top_level_and_trionics_names():
    """Test the names tractor has at its top level and in trionics."""
    assert tractor.open_actor_cluster is trionics.open_actor_cluster
    assert tractor.experimental.msgpub is msgpub
    assert callable(trionics.collapse_eg)


class TestMsgpub:
    def test_type_checks(self):
        """Test that @msgpub refuses a function that is no async generator function, or
        that has no get_topics parameter, with a TypeError saying which."""
        with pytest.raises(TypeError, match="must define a `get_topics`"):

            @msgpub
            async def no_get_topics(yo):
                yield

        with pytest.raises(TypeError, match="must be an async generator function"):

            @msgpub
            def not_async_gen(get_topics):
                pass

    def test_required_arguments(self):
        """Test that calling a publisher without ctx or topics, or without task_name
        when it has several tasks, is a TypeError."""

        async def main():
            with pytest.raises(TypeError):
                await counter()
            with pytest.raises(TypeError):
                await two_tasks(ctx=None)
            with pytest.raises(TypeError, match="task_name"):
                await two_tasks(ctx=None, topics=["doggy"])

        run(main)

    def test_subscribers_get_their_topics_from_one_publisher(self, reg):
        """Test that concurrent subscribers through open_stream_from(pub_fn, topics=...)
        each get only their topic, and get_topics() is what they asked for."""

        async def take(portal, topic, results):
            async with portal.open_stream_from(counter, topics=[topic]) as stream:
                results[topic] = []
                async for packet in stream:
                    assert list(packet) == [topic]
                    results[topic].append(packet[topic])
                    if len(results[topic]) == 10:
                        break

        async def main():
            async with tractor.open_nursery(**reg) as n:
                portal = await n.start_actor("publisher", enable_modules=[__name__])
                results: dict = {}
                async with trio.open_nursery() as tasks:
                    tasks.start_soon(take, portal, "even", results)
                    tasks.start_soon(take, portal, "odd", results)
                assert all(v % 2 == 0 for v in results["even"]) and len(results["even"]) == 10
                assert all(v % 2 == 1 for v in results["odd"]) and len(results["odd"]) == 10
                # a subscriber that left took its topics with it: a new one is served
                await take(portal, "odd", results)
                await portal.cancel_actor()

        run(main)

    def test_task_name_and_finite_publisher(self, reg):
        """Test open_stream_from(pub_fn, topics=..., task_name=...) with named publisher
        tasks, kwargs reaching the generator, and a stream ending with its generator."""

        async def main():
            async with tractor.open_nursery(**reg) as n:
                portal = await n.start_actor("publisher", enable_modules=[__name__])
                async with portal.open_stream_from(two_tasks, topics=["doggy"], task_name="one", start=10) as s:
                    assert [p async for p in s] == [{"doggy": 10}, {"doggy": 11}]
                async with portal.open_stream_from(three_then_done, topics=["t"]) as s:
                    assert [p async for p in s] == [{"t": 0}, {"t": 1}, {"t": 2}]
                with pytest.raises(tractor.RemoteActorError) as info:
                    async with portal.open_stream_from(two_tasks, topics=["doggy"], task_name="three") as s:
                        [p async for p in s]
                assert info.value.type is TypeError
                await portal.cancel_actor()

        run(main)


class TestMaybeOpenContext:
    def test_tractors_keyword_names(self):
        """Test maybe_open_context(acm_func=..., kwargs=..., key=...) (tractor's names),
        a key computed from the kwargs, and the earlier acm_fn= keyword."""
        opened = []

        @asynccontextmanager
        async def resource(name):
            opened.append(name)
            yield name.upper()

        async def main():
            async with trionics.maybe_open_context(acm_func=resource, kwargs={"name": "db"}, key="db") as first:
                async with trionics.maybe_open_context(acm_func=resource, kwargs={"name": "db"}, key="db") as again:
                    assert first == (False, "DB") and again == (True, "DB")
            async with trionics.maybe_open_context(acm_func=resource, kwargs={"name": "x"}, key=lambda name: name) as (
                hit,
                value,
            ):
                assert (hit, value) == (False, "X")
            async with trionics.maybe_open_context(acm_fn=resource, kwargs={"name": "y"}) as (hit, value):
                assert (hit, value) == (False, "Y")
            with pytest.raises(TypeError):
                async with trionics.maybe_open_context(kwargs={"name": "z"}):
                    pass
            assert opened == ["db", "x", "y"]

        run(main)


class TestCollapseEg:
    def test_single_error_group_is_unwrapped(self):
        """Test that collapse_eg raises a nursery's lone error itself and leaves a group
        of several errors as it is."""

        async def fail(exc):
            raise exc

        async def main():
            with pytest.raises(ValueError):
                async with trionics.collapse_eg(), trio.open_nursery() as tn:
                    tn.start_soon(fail, ValueError("one"))
            with pytest.raises(ExceptionGroup) as info:
                async with trionics.collapse_eg(), trio.open_nursery() as tn:
                    tn.start_soon(fail, ValueError("one"))
                    tn.start_soon(fail, KeyError("two"))
            assert len(info.value.exceptions) == 2

        run(main)


class TestBroadcast:
    def test_subscribe_after_close_raises(self):
        """Test that subscribe() on a closed broadcast receiver raises
        trio.ClosedResourceError (as a context manager it closes at the block's end)."""

        async def main():
            _tx, rx = trio.open_memory_channel(1)
            async with broadcast_receiver(rx, 1) as brx:
                pass
            with pytest.raises(trio.ClosedResourceError):
                async with brx.subscribe():
                    pass

        run(main)

    def test_slow_subscriber_lags_and_the_exact_skip_is_reported(self):
        """Test that a subscriber that fell behind gets Lagged with how many values it
        missed, then goes on with the oldest value kept; raise_on_lag=False skips ahead
        silently."""

        async def main():
            tx, rx = trio.open_memory_channel(3)
            brx = broadcast_receiver(rx, 3)
            async with brx.subscribe() as fast, brx.subscribe(raise_on_lag=False) as quiet:
                for value in range(5):
                    await tx.send(value)
                    assert await fast.receive() == value
                with pytest.raises(Lagged) as info:
                    await brx.receive()
                assert info.value.skipped == 2
                assert await brx.receive() == 2
                assert await quiet.receive() == 2

        run(main)

    def test_subscriber_cancelled_mid_receive_does_not_starve_the_others(self):
        """Test that cancelling the task that is pulling from the source lets another
        subscriber receive the next value (nobody stays stuck on the source)."""

        async def main():
            tx, rx = trio.open_memory_channel(1)
            brx = broadcast_receiver(rx, 1)
            scope = trio.CancelScope()

            async def pulls():
                with scope:
                    async with brx.subscribe() as sub:
                        async for _ in sub:
                            pass

            async with trio.open_nursery() as tn:
                tn.start_soon(pulls)
                await trio.testing.wait_all_tasks_blocked()
                scope.cancel()
                await trio.testing.wait_all_tasks_blocked()
                await tx.send(1)
                with trio.fail_after(5):  # a hang guard: it is the only receiver left
                    assert await brx.receive() == 1

        run(main)


# -- streams -----------------------------------------------------------------------------


def test_stream_without_ctx_is_refused_in_tractors_words():
    """Test that @stream without a ctx parameter says it must be `ctx: tractor.Context`."""
    with pytest.raises(TypeError, match=r"no_ctx must be `ctx: tractor\.Context`"):

        @tractor.stream
        async def no_ctx():
            pass


# -- asyncio -----------------------------------------------------------------------------


class TestAsyncio:
    @pytest.mark.parametrize(("kind", "expected"), [("assert", AssertionError), ("group", ExceptionGroup)])
    def test_run_task_error_keeps_its_type(self, reg, kind, expected):
        """Test that an asyncio task's error reaches the parent boxed with its own type
        (AssertionError stays AssertionError; an exception group stays one)."""

        async def main():
            async with tractor.open_nursery(**reg) as n:
                portal = await n.run_in_actor(run_task_fails, kind=kind, infect_asyncio=True)
                with pytest.raises(tractor.RemoteActorError) as info:
                    await portal.result()
                assert info.value.type is expected

        with pytest.raises(tractor.RemoteActorError):
            run(main)

    def test_open_channel_from_passes_kwargs_and_the_error_type(self, reg):
        """Test that open_channel_from(fn, **kwargs) passes kwargs to fn and that the
        asyncio task's AssertionError reaches the trio side as AssertionError."""

        async def main():
            async with tractor.open_nursery(**reg) as n:
                portal = await n.run_in_actor(channel_fails, infect_asyncio=True)
                assert await portal.result() == [10, 11]

        run(main)

    def test_a_group_caught_in_the_infected_actor_is_reraised_boxed(self, reg):
        """Test that an exception group from asyncio can be caught in the infected actor,
        re-raised, and reaches the parent boxed as an ExceptionGroup."""

        async def main():
            async with tractor.open_nursery(**reg) as n:
                portal = await n.run_in_actor(catches_group_and_reraises, infect_asyncio=True)
                with pytest.raises(tractor.RemoteActorError) as info:
                    await portal.result()
                assert info.value.type is ExceptionGroup
                assert "KeyError" in info.value.tb_str and "ValueError" in info.value.tb_str

        with pytest.raises(tractor.RemoteActorError):
            run(main)

    def test_cancelling_the_parent_cancels_the_asyncio_task(self, reg):
        """Test that cancelling the tree while the asyncio task runs ends the child
        (the asyncio task is cancelled with it) and the call in flight gets
        ContextCancelled naming the canceller."""

        async def main():
            async with tractor.open_nursery(**reg) as n:
                portal = await n.start_actor(
                    "aio_waiter", enable_modules=[__name__, testing.RECORDER], infect_asyncio=True
                )
                cancelled = []

                async def call():
                    with pytest.raises(tractor.ContextCancelled) as info:
                        await portal.run(waits_on_asyncio)
                    cancelled.append(info.value.canceller)

                async with trio.open_nursery() as tasks:
                    tasks.start_soon(call)
                    await portal.run(testing.wait_recorded, key="waiting")
                    await n.cancel()
                assert n.cancelled and cancelled == [tractor.current_actor().uid]

        run(main)


# -- RPC errors and enable_modules ----------------------------------------------------------


def add(a: int, b: int) -> int:
    return a + b


def test_rpc_errors_are_boxed(reg):
    """Test that a function of a module the actor did not enable raises RemoteActorError
    whose .type is ModuleNotExposed, and an unknown name in an enabled module one whose
    .type is AttributeError."""

    async def main():
        async with tractor.open_nursery(**reg) as n:
            portal = await n.start_actor("rpc", enable_modules=[__name__])
            with pytest.raises(tractor.RemoteActorError) as info:
                await portal.run("os.path", "join")
            assert info.value.type is tractor.ModuleNotExposed
            with pytest.raises(tractor.RemoteActorError) as info:
                await portal.run(__name__, "no_such_function")
            assert info.value.type is AttributeError
            assert await portal.run(__name__, "add", a=1, b=2) == 3  # the actor survives both
            await portal.cancel_actor()

    run(main)


REFUSED_CALL = """
import trio
import notebook_actors as tractor
from notebook_actors.testing import private_registry_addr

async def main():
    async with tractor.open_nursery(registry_addrs=[private_registry_addr()]) as n:
        portal = await n.start_actor("rpc", enable_modules=[])
        for _ in range(2):
            try:
                await portal.run("os.path", "join")
            except tractor.RemoteActorError as exc:
                print("caller got", exc.type.__name__, flush=True)
        await portal.cancel_actor()

trio.run(main)
"""


def test_a_refused_call_is_logged_once_in_the_actor():
    """Test that the actor logs each refused call once (one warning line per call), and
    each caller gets ModuleNotExposed."""
    done = subprocess.run([sys.executable, "-c", REFUSED_CALL], capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["caller got ModuleNotExposed"] * 2
    assert done.stderr.count("refused a call: module 'os.path' is not enabled") == 2, done.stderr


@pytest.mark.parametrize(
    ("source", "error"),
    [("import no_such_module_for_fidelity\n", None), ("def broken(:\n", SyntaxError)],
    ids=["missing", "syntax"],
)
def test_enable_modules_that_cannot_import_fail_in_the_parent(reg, tmp_path, monkeypatch, source, error):
    """Test that start_actor/run_in_actor with an enable_modules entry that cannot be
    imported (missing, or a syntax error) raise the import's own error type in the
    parent right away, and spawn nothing."""
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "fidelity_bad_mod.py").write_text(source)
    missing = "fidelity_module_that_does_not_exist"

    async def main():
        async with tractor.open_nursery(**reg) as n:
            if error is None:
                with pytest.raises(ModuleNotFoundError):
                    await n.start_actor("bad", enable_modules=[missing])
                with pytest.raises(ModuleNotFoundError):
                    await n.run_in_actor(add, a=1, b=2, enable_modules=["no_such_pkg_fidelity.sub"])
            else:
                with pytest.raises(error):
                    await n.start_actor("bad", enable_modules=["fidelity_bad_mod"])
            assert not n.children
        assert n.exitcodes == {}

    run(main)


#: bodies of a module that compiles but fails as it runs, and the error each raises
FAILS_IN_ITS_BODY = pytest.mark.parametrize(
    ("body", "error"),
    [
        ("import fidelity_module_missing_at_import\n", ModuleNotFoundError),
        ("raise ValueError('no config')\n", ValueError),
    ],
    ids=["imports-missing", "raises"],
)


@FAILS_IN_ITS_BODY
def test_enable_modules_that_fail_in_their_body_fail_the_child(reg, tmp_path, monkeypatch, body, error):
    """Test that an enable_modules entry that compiles but fails as it runs (its body
    imports a missing module, or raises) fails the child as it starts, not a later
    call: its calls raise the import's error boxed (.type is the original type), the
    nursery raises it too, and a run_in_actor function never runs."""
    monkeypatch.syspath_prepend(str(tmp_path))
    name = f"fidelity_fails_at_import_{error.__name__.lower()}"
    (tmp_path / f"{name}.py").write_text(f"def ping():\n    return 'pong'\n\n{body}")
    marker = tmp_path / "ran"

    async def call_it():
        async with tractor.open_nursery(**reg) as n:
            portal = await n.start_actor("bad", enable_modules=[name])
            with pytest.raises(tractor.RemoteActorError) as info:
                await portal.run(name, "ping")
            assert info.value.type is error and name in info.value.tb_str
            await trio.sleep_forever()  # the nursery's own error ends the block

    async def main_fn():
        async with tractor.open_nursery(**reg) as n:
            await n.run_in_actor(touch, path=str(marker), enable_modules=[name])

    for program in (call_it, main_fn):
        with pytest.raises(tractor.RemoteActorError) as info:
            run(program)
        assert info.value.type is error, program
    assert not marker.exists()


@FAILS_IN_ITS_BODY
def test_a_root_whose_enable_modules_fail_in_their_body_raises_their_error(reg, tmp_path, monkeypatch, body, error):
    """Test that a root's own enable_modules entry that fails as it runs raises the
    import's error (its own type, not boxed) from open_root_actor, before the body."""
    monkeypatch.syspath_prepend(str(tmp_path))
    name = f"fidelity_root_fails_at_import_{error.__name__.lower()}"
    (tmp_path / f"{name}.py").write_text(body)
    entered = []

    async def main():
        async with tractor.open_root_actor(enable_modules=[name], **reg):
            entered.append(True)

    with pytest.raises(error) as info:
        run(main)
    assert not entered
    assert any(name in note for note in getattr(info.value, "__notes__", [])), "the note names the entry"


def touch(path: str) -> None:
    with open(path, "w"):
        pass


def test_children_is_empty_after_the_block(reg):
    """Test that an actor nursery's _children is empty after its block, whether the
    block ended normally or by a child's error (tractor programs check it)."""

    async def main():
        async with tractor.open_nursery(**reg) as n:
            await n.run_in_actor(add, a=1, b=2)
            assert n._children
        assert not n._children and list(n.exitcodes.values()) == [0]
        with pytest.raises(tractor.RemoteActorError):
            async with tractor.open_nursery(**reg) as n:
                await n.run_in_actor(run_task_fails, kind="assert", infect_asyncio=True)
        assert not n._children

    run(main)


def test_nested_open_nursery_accepts_root_options(reg):
    """Test that open_nursery(arbiter_addr=..., registry_addrs=...) inside a running
    root is accepted and ignored (as tractor does); a misspelled option is still a
    TypeError."""

    async def main():
        async with tractor.open_nursery(**reg) as outer:
            async with tractor.open_nursery(arbiter_addr=("127.0.0.1", 1616)) as n:
                assert await (await n.run_in_actor(add, a=2, b=3)).result() == 5
            async with tractor.open_nursery(registry_addrs=[("127.0.0.1", 1616)], loglevel="cancel"):
                pass
            with pytest.raises(TypeError, match="arbitter_addr"):
                async with tractor.open_nursery(arbitter_addr=("127.0.0.1", 1616)):
                    pass
            assert not outer._children

    run(main)


# -- contexts ----------------------------------------------------------------------------

_state: list = []


@tractor.context
async def streams_then_returns(ctx, count: int) -> str:
    await ctx.started("ready")
    async with ctx.open_stream() as stream:
        for i in range(count):
            await stream.send(i)
    return "done"


@tractor.context
async def opens_stream_and_returns(ctx) -> int:
    await ctx.started()
    async with ctx.open_stream():
        pass
    return 42


@tractor.context
async def echo_until_cancelled(ctx) -> None:
    await ctx.started()
    testing.record("callee", "streaming")
    try:
        async with ctx.open_stream() as stream:
            async for msg in stream:
                await stream.send(msg)
    except trio.Cancelled:
        testing.record("callee", f"cancelled by {ctx.canceller[0]}")
        raise
    testing.record("callee", "returned")


@tractor.context
async def cancels_itself_first(ctx) -> None:
    await ctx.cancel()
    await trio.sleep_forever()


class TestContexts:
    def test_result_with_the_callees_stream_unopened(self, reg):
        """Test that ctx.result() works when the callee streamed into a stream we never
        opened (its messages are dropped, far more than one buffer's worth)."""

        async def main():
            async with tractor.open_nursery(**reg) as n:
                portal = await n.start_actor("ctx", enable_modules=[__name__])
                async with portal.open_context(streams_then_returns, count=3000) as (ctx, first):
                    assert first == "ready"
                    assert await ctx.result() == "done"
                await portal.cancel_actor()

        run(main)

    def test_callee_opens_its_stream_then_returns(self, reg):
        """Test that a callee that opens its stream and returns at once gives the caller
        a stream that ends at once, then its result."""

        async def main():
            async with tractor.open_nursery(**reg) as n:
                portal = await n.start_actor("ctx", enable_modules=[__name__])
                async with portal.open_context(opens_stream_and_returns) as (ctx, _):
                    async with ctx.open_stream() as stream:
                        assert [m async for m in stream] == []
                    assert await ctx.result() == 42
                await portal.cancel_actor()

        run(main)

    def test_leaving_the_block_cancels_a_callee_streaming_unheard(self, reg):
        """Test that leaving open_context after the callee opened its stream (ours never
        opened) cancels the callee, which sees the cancellation naming us."""

        async def main():
            async with tractor.open_nursery(**reg) as n:
                portal = await n.start_actor("ctx", enable_modules=[__name__, testing.RECORDER])
                async with portal.open_context(echo_until_cancelled) as (ctx, _):
                    assert await portal.run(testing.wait_recorded, key="callee") == "streaming"
                assert await ctx.result() is None
                assert await portal.run(testing.recorded, key="callee") == "cancelled by root"
                assert portal.channel.connected()
                await portal.cancel_actor()

        run(main)

    def test_open_stream_after_our_cancel_raises_context_cancelled(self, reg):
        """Test tractor's sequence: ctx.cancel(), then ctx.open_stream() raises
        ContextCancelled, which ends the block quietly (our own cancel); opening again
        after the block raises it again; the callee saw trio.Cancelled."""

        async def main():
            async with tractor.open_nursery(**reg) as n:
                portal = await n.start_actor("ctx", enable_modules=[__name__, testing.RECORDER])
                async with portal.open_context(echo_until_cancelled) as (ctx, _):
                    await portal.run(testing.wait_recorded, key="callee")
                    await ctx.cancel()
                    with pytest.raises(tractor.ContextCancelled) as info:
                        async with ctx.open_stream():
                            pass
                    assert info.value.canceller == tractor.current_actor().uid
                    raise info.value
                with pytest.raises(tractor.ContextCancelled):
                    async with ctx.open_stream():
                        pass
                assert await portal.run(testing.recorded, key="callee") == "cancelled by root"
                await portal.cancel_actor()

        run(main)

    def test_result_blocks_while_the_callee_waits_on_its_stream(self, reg):
        """Test that ctx.result() does not end a callee that waits to receive on its
        stream (it stays blocked until we cancel it)."""

        async def main():
            async with tractor.open_nursery(**reg) as n:
                portal = await n.start_actor("ctx", enable_modules=[__name__, testing.RECORDER])
                async with portal.open_context(echo_until_cancelled) as (ctx, _):
                    await portal.run(testing.wait_recorded, key="callee")
                    with trio.move_on_after(0.5) as waited:  # it must still be blocked then
                        await ctx.result()
                    assert waited.cancelled_caught
                    assert await portal.run(testing.recorded, key="callee") == "streaming"
                    await ctx.cancel()
                await portal.cancel_actor()

        run(main)

    def test_callee_that_cancels_itself_says_so(self, reg):
        """Test that a callee cancelling itself before started() reports a
        ContextCancelled whose text says it cancelled itself."""

        async def main():
            async with tractor.open_nursery(**reg) as n:
                portal = await n.start_actor("ctx", enable_modules=[__name__])
                with pytest.raises(tractor.ContextCancelled) as info:
                    async with portal.open_context(cancels_itself_first):
                        pass
                assert "cancelled itself" in str(info.value)
                assert info.value.canceller == portal.channel.uid
                await portal.cancel_actor()

        run(main)

    def test_msg_buffer_size_follows_the_actor_class_attribute(self, reg):
        """Test that Actor.msg_buffer_size is a class attribute setting the default
        receive window: a sender without backpressure to a reader that does not read
        overruns past it, not before; msg_buffer_size= overrides it."""

        async def flood(portal, count, key, **open_kw):
            async with portal.open_context(floods_without_backpressure, count=count, key=key) as (ctx, _):
                async with ctx.open_stream(**open_kw) as stream:
                    await stream.send("go")
                    outcome = await portal.run(testing.wait_recorded, key=key)  # we read nothing meanwhile
            return outcome

        async def main():
            size = tractor.Actor.msg_buffer_size
            assert isinstance(size, int) and size > 0
            async with tractor.open_nursery(**reg) as n:
                portal = await n.start_actor("ctx", enable_modules=[__name__, testing.RECORDER])
                assert await flood(portal, size, "a") == "no overrun"
                assert await flood(portal, size + 1, "b") == "overrun"
                tractor.Actor.msg_buffer_size = 8  # this (the reading) actor's default window
                try:
                    assert await flood(portal, 9, "c") == "overrun"
                    assert await flood(portal, 9, "d", msg_buffer_size=9) == "no overrun"
                finally:
                    tractor.Actor.msg_buffer_size = size
                await portal.cancel_actor()

        run(main)


@tractor.context
async def floods_without_backpressure(ctx, count: int, key: str) -> None:
    await ctx.started()
    async with ctx.open_stream(backpressure=False) as stream:
        await stream.receive()  # the caller's stream is open: its window is granted
        try:
            for i in range(count):
                await stream.send(i)
        except tractor.StreamOverrun:
            testing.record(key, "overrun")
        else:
            testing.record(key, "no overrun")
        async for _ in stream:  # until the caller closes its stream
            pass


# -- cancellation --------------------------------------------------------------------------


def sync_sleeper(ready_path: str) -> None:
    import pathlib
    import time

    pathlib.Path(ready_path).touch()
    time.sleep(3600)  # blocked: it cannot see a cancel request


async def spawns_a_sync_sleeper(ready_path: str) -> None:
    async with tractor.open_nursery() as n:
        await n.run_in_actor(sync_sleeper, ready_path=ready_path)


async def fails_at_once(i: int) -> None:
    raise ValueError(f"child {i} fails")


class TestCancellation:
    def test_grandchild_blocked_in_time_sleep_is_cancelled_before_the_grace(self, reg, tmp_path):
        """Test that cancelling a tree whose grandchild is blocked in time.sleep does
        not wait for the whole escalation grace: the grandchild, which cannot
        acknowledge the cancel request, is terminated first, so its parent exits
        gracefully (code 0) long before the root would SIGTERM it."""
        ready = tmp_path / "ready"

        async def main():
            # a grace far beyond the hang guard: only the early escalation can pass
            async with tractor.open_nursery(cancel_grace=120, **reg) as n:
                await n.run_in_actor(spawns_a_sync_sleeper, ready_path=str(ready))
                assert await trio.to_thread.run_sync(testing.wait_for_path, str(ready), 30)
                with trio.fail_after(30):
                    await n.cancel()
            assert list(n.exitcodes.values()) == [0]

        run(main)

    def test_many_children_failing_at_once_are_one_multierror(self, reg):
        """Test that 25 children erroring at once surface as one MultiError of 25
        boxed errors, each with the original type."""

        async def main():
            with pytest.raises(tractor.MultiError) as info:
                async with tractor.open_nursery(**reg) as n:
                    for i in range(25):
                        await n.run_in_actor(fails_at_once, name=f"failer_{i}", i=i)
            errors = info.value.exceptions
            assert len(errors) == 25
            assert all(isinstance(e, tractor.RemoteActorError) and e.type is ValueError for e in errors)
            assert sorted(e.src_uid[0] for e in errors) == sorted(f"failer_{i}" for i in range(25))
            assert not n._children

        run(main)


# -- streams (real actors) -------------------------------------------------------------------


async def numbers_forever():
    i = 0
    while True:
        yield i
        i += 1
        await trio.lowlevel.checkpoint()


@tractor.context
async def sends_forever(ctx) -> None:
    await ctx.started()
    async with ctx.open_stream() as stream:
        i = 0
        while True:
            await stream.send(i)
            i += 1


class TestStreams:
    def test_breaking_out_early_raises_nothing(self, reg):
        """Test that a consumer breaking out of async for on open_stream_from and on
        ctx.open_stream gets no ClosedResourceError (nor anything else)."""

        async def main():
            async with tractor.open_nursery(**reg) as n:
                portal = await n.start_actor("streamer", enable_modules=[__name__])
                for _ in range(2):
                    async with portal.open_stream_from(numbers_forever) as stream:
                        async for value in stream:
                            if value == 5:
                                break
                async with portal.open_context(sends_forever) as (ctx, _):
                    async with ctx.open_stream() as stream:
                        async for value in stream:
                            if value == 5:
                                break
                    await ctx.cancel()
                await portal.cancel_actor()

        run(main)

    def test_consumer_tasks_respawned_on_one_stream(self, reg):
        """Test that consumer tasks started one after another on one stream each carry
        on where the previous one stopped."""

        async def main():
            async with tractor.open_nursery(**reg) as n:
                portal = await n.start_actor("streamer", enable_modules=[__name__])
                seen = []

                async def consume(stream, count):
                    async for value in stream:
                        seen.append(value)
                        if len(seen) % count == 0:
                            return

                async with portal.open_stream_from(numbers_forever) as stream:
                    for _ in range(3):
                        async with trio.open_nursery() as tasks:
                            tasks.start_soon(consume, stream, 10)
                assert seen == list(range(30))
                await portal.cancel_actor()

        run(main)


# -- current tractor's names ------------------------------------------------------------------


@tractor.context
async def reports_its_ctx(ctx) -> bool:
    await ctx.started(tractor.current_ipc_ctx() is ctx)
    return tractor.current_ipc_ctx() is ctx


async def ctx_of_a_plain_call() -> bool:
    ctx = tractor.current_ipc_ctx()
    return ctx is not None and ctx.side == "callee"


def ctx_of_a_sync_call() -> list:
    """A plain sync function (the runtime runs those inline, without a task)."""
    ctx = tractor.current_ipc_ctx(error_on_not_set=True)
    assert ctx is tractor.current_ipc_ctx()  # the same one, asked twice
    return [ctx.side, list(ctx.chan.uid), ctx.fn_name]


class TestCurrentNames:
    def test_wait_for_result_and_current_ipc_ctx(self, reg):
        """Test Portal.wait_for_result() and Context.wait_for_result() (current
        tractor's names for result()) and current_ipc_ctx() on both sides, in async
        functions and in plain sync functions called through portal.run."""

        async def main():
            assert tractor.current_ipc_ctx() is None
            with pytest.raises(RuntimeError):
                tractor.current_ipc_ctx(error_on_not_set=True)
            async with tractor.open_nursery(**reg) as n:
                portal = await n.run_in_actor(add, a=1, b=2)
                assert await portal.wait_for_result() == 3
                daemon = await n.start_actor("ctx", enable_modules=[__name__])
                assert await daemon.run(ctx_of_a_plain_call) is True
                me = list(tractor.current_actor().uid)
                assert await daemon.run(ctx_of_a_sync_call) == ["callee", me, f"{__name__}:ctx_of_a_sync_call"]
                async with daemon.open_context(reports_its_ctx) as (ctx, first):
                    assert first is True
                    assert tractor.current_ipc_ctx() is ctx
                    assert await ctx.wait_for_result() is True
                assert tractor.current_ipc_ctx() is None
                await daemon.cancel_actor()

        run(main)


# -- discovery with a registry daemon over TCP ------------------------------------------------


async def addresses_seen_by_a_child() -> dict:
    """What a child of a tree whose registry is on loopback TCP sees of addresses
    (its answer crosses the wire, where tuples become lists: the types are checked here)."""
    actor = tractor.current_actor()
    async with tractor.get_registry() as reg:
        table = await reg.run_from_ns("self", "get_registry")
        found = await reg.run_from_ns("self", "find_actor", name="root")
        waited = await reg.run_from_ns("self", "wait_for_actor", name="root")
    async with tractor.find_actor("root") as root:
        raddr = root.channel.raddr
    return {
        "types": {
            "accept_addr": type(actor.accept_addr).__name__,
            "entries": sorted({type(a).__name__ for a in table.values()}),
            "find_actor": type(found).__name__,
            "wait_for_actor": sorted({type(a).__name__ for a in waited}),
            "query_actor": type(await tractor.query_actor("root")).__name__,
            "raddr": type(raddr).__name__,
        },
        "accept_addr": actor.accept_addr,
        "root": raddr,
    }


def test_tcp_registry_gives_host_port_tuples():
    """Test that in a tree whose registry was given as TCP (host, port), the root (the
    registry) accepts at that address, the child listens on loopback TCP, and
    accept_addr, the registry's entries (local and through a portal), query_actor and
    Channel.raddr/laddr are (host, port) tuples, as in tractor."""
    addr = ("127.0.0.1", free_tcp_port())

    async def main():
        async with tractor.open_nursery(registry_addrs=[addr]) as n:
            root = tractor.current_actor()
            assert root.is_arbiter and root.accept_addr == addr and addr in root.accept_addrs
            portal = await n.start_actor("tcp_kid", enable_modules=[__name__])
            view = await portal.run(addresses_seen_by_a_child)
            assert view["types"] == {
                "accept_addr": "tuple",
                "entries": ["tuple"],
                "find_actor": "tuple",
                "wait_for_actor": ["tuple"],
                "query_actor": "tuple",
                "raddr": "tuple",
            }
            kid = tuple(view["accept_addr"])
            assert kid[0] == "127.0.0.1" and kid != addr
            assert tuple(view["root"]) == addr
            assert portal.channel.raddr == kid
            uid = portal.channel.uid
            assert (await root.get_registry())[f"tcp_kid.{uid[1]}"] == kid
            assert root.registry.find("tcp_kid") == kid
            assert await tractor.query_actor("tcp_kid") == kid
            async with tractor.wait_for_actor("tcp_kid") as found:
                assert found.channel.raddr == kid
                host, port = found.channel.laddr  # we dialed it over TCP
                assert host == "127.0.0.1" and port not in (kid[1], addr[1])
                assert await found.run(add, a=1, b=2) == 3
            await portal.cancel_actor()

    run(main)


def free_tcp_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SIGINT_PROGRAM = """
import sys, trio
import notebook_actors as tractor

async def main():
    async with tractor.open_nursery(registry_addrs=[("127.0.0.1", int(sys.argv[1]))]) as n:
        await n.start_actor("sig_kid", enable_modules=[])
        async with tractor.wait_for_actor("sig_kid"):
            print("ready", flush=True)
        await trio.sleep_forever()

trio.run(main)
"""


def test_remote_registry_daemon_deregisters_and_stops(tmp_path):
    """Test, against a run_daemon registry in its own process on TCP: the parent's
    _peers holds its child's uid; a cancelled child leaves the registry, and so do
    the children of a program stopped by SIGINT;
    get_arbiter(host, port).cancel_actor() stops the daemon, so the next connection
    raises OSError."""
    import signal
    import subprocess
    import sys

    port = free_tcp_port()
    source = f"import notebook_actors as t; t.run_daemon([], name='registrar', registry_addrs=[('127.0.0.1', {port})])"
    daemon = subprocess.Popen([sys.executable, "-c", source])

    async def names(addr):
        async with tractor.get_arbiter(*addr) as registry:
            return sorted(k.split(".")[0] for k in await registry.run_from_ns("self", "get_registry"))

    async def main():
        addr = ("127.0.0.1", port)
        while True:  # until the daemon listens (a plain connection: nothing binds the port)
            try:
                await (await trio.open_tcp_stream(*addr)).aclose()
                break
            except OSError:
                await trio.sleep(0.1)
        async with tractor.open_nursery(registry_addrs=[addr]) as n:
            portal = await n.start_actor("kid", enable_modules=[__name__])
            async with tractor.wait_for_actor("kid"):
                pass
            me = tractor.current_actor()
            assert portal.channel.uid in me._peers
            assert "kid" in await names(addr)
            # a root that joined a TCP registry listens on loopback TCP too, and is
            # registered there as (host, port), as is its child
            assert not me.is_arbiter and type(me.accept_addr) is tuple and me.accept_addr[0] == "127.0.0.1"
            async with tractor.get_arbiter(*addr) as registry:
                table = await registry.run_from_ns("self", "get_registry")
            assert table[f"{me.uid[0]}.{me.uid[1]}"] == me.accept_addr
            assert table[f"kid.{portal.channel.uid[1]}"] == portal.channel.raddr
            assert type(portal.channel.raddr) is tuple
            await portal.cancel_actor()
            with trio.fail_after(10):
                while "kid" in await names(addr):
                    await trio.sleep(0.05)
            script = tmp_path / "sigint_program.py"
            script.write_text(SIGINT_PROGRAM)
            program = testing.start_script(str(script), str(port))
            try:
                line = await trio.to_thread.run_sync(program.stdout.readline)
                assert line.strip() == "ready"
                assert "sig_kid" in await names(addr)
                program.send_signal(signal.SIGINT)
                await trio.to_thread.run_sync(program.communicate)
            finally:
                if program.poll() is None:
                    program.kill()
                program.communicate()  # reaps it and closes its pipes
            assert "sig_kid" not in await names(addr)
            async with tractor.get_arbiter(*addr) as registry:
                assert await registry.cancel_actor() is True
        with trio.fail_after(10):
            await trio.to_thread.run_sync(daemon.wait)
        async with tractor.open_root_actor(name="after", registry_addrs=[testing.private_registry_addr()]):
            with pytest.raises(OSError):
                async with tractor.get_arbiter(*addr):
                    pass

    try:
        run(main)
    finally:
        if daemon.poll() is None:
            daemon.kill()
        daemon.wait()
