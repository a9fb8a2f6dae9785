"""The channel's read role: a task waiting for its call's message reads the socket
itself while the channel's reader task only waits for it (notebook_actors/_channel.py,
``Channel.serve`` and ``Channel.wait_for``). What it reads for others is dispatched in
order, a cancelled holder hands the role back without losing a byte, and a channel
that closes under a holder wakes it."""

from __future__ import annotations

import os
import tempfile
import uuid
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

import notebook_actors as na
from notebook_actors import _transport
from notebook_actors._call import Call
from notebook_actors._channel import Channel
from notebook_actors._codec import encode_frame
from notebook_actors._exceptions import TransportClosed
from notebook_actors.msg import Ident, Return, Start, Yield, encoder
from notebook_actors.testing import trio_test

KINDS = ["uds", "tcp"]


def raw(value: Any) -> msgspec.Raw:
    return msgspec.Raw(encoder.encode(value))


def ident(name: str) -> Ident:
    return Ident((name, uuid.uuid4().hex), os.getpid(), None)


@asynccontextmanager
async def served(kind: str):
    """A served channel over ``kind`` (its reader task records who dispatched each
    message and delivers to its calls, like an actor's dispatcher), the peer's raw
    byte stream, and the record."""
    addr = f"uds:{tempfile.gettempdir()}/na-rr-{uuid.uuid4().hex[:10]}.sock" if kind == "uds" else "tcp:127.0.0.1:0"
    listeners, bound = await _transport.listen(addr)
    try:
        client = await _transport.connect(bound)
        peer = await listeners[0].accept()
        chan = Channel(dialer=True)
        chan.attach(client, ident("peer"), b"")
        record: list[tuple[trio.lowlevel.Task, Any]] = []

        def dispatch(msg: Any) -> None:
            record.append((trio.lowlevel.current_task(), msg))
            call = chan.calls.get(msg.cid)
            if call is not None:
                call.deliver(msg)

        def wake_calls(closed: Channel) -> None:
            for call in list(closed.calls.values()):
                call.wake()

        chan.on_close.append(wake_calls)
        server: list[trio.lowlevel.Task] = []

        async def serve() -> None:
            server.append(trio.lowlevel.current_task())
            try:
                await chan.serve(dispatch)
            except TransportClosed:
                pass
            finally:
                chan.mark_closed(None)

        async with trio.open_nursery() as n:
            n.start_soon(chan.run_writer)
            n.start_soon(serve)
            await trio.testing.wait_all_tasks_blocked()
            yield chan, peer, record, server[0]
            n.cancel_scope.cancel()
        await client.aclose()
        await peer.aclose()
    finally:
        for listener in listeners:
            await listener.aclose()
        _transport.cleanup(bound)


def new_call(chan: Channel) -> Call:
    call = Call(chan, chan.next_cid(), "caller", "m:f")
    chan.calls[call.cid] = call
    return call


@pytest.mark.parametrize("kind", KINDS)
@trio_test
async def test_a_waiting_caller_reads_its_reply_itself(kind):
    """Test that a task waiting for its reply, while the reader task only waits for
    the socket, reads and dispatches the reply itself (one scheduling pass instead of
    the reader's and then its own), and that the role goes back to the reader task."""
    async with served(kind) as (chan, peer, record, server):
        call = new_call(chan)
        got: list[Any] = []

        async def caller() -> None:
            got.append(await call.next())

        async with trio.open_nursery() as n:
            n.start_soon(caller)
            await trio.testing.wait_all_tasks_blocked()
            caller_task = chan._reader
            assert caller_task is not None and caller_task is not server  # the caller holds the role
            await peer.send_all(encode_frame(Return(call.cid, raw(7))))
        assert [type(m) for m in got] == [Return]
        assert record[-1][0] is caller_task
        # the caller is gone: the reader task reads again
        await peer.send_all(encode_frame(Yield(99, raw(1))))
        with trio.fail_after(10):
            while len(record) < 2:
                await trio.sleep(0.01)
        assert record[-1][0] is server


@pytest.mark.parametrize("kind", KINDS)
@trio_test
async def test_what_a_caller_reads_for_others_is_dispatched_in_order(kind):
    """Test that messages for other calls, and the peer's own requests, that come in
    while a caller holds the role are dispatched in the order they came, the other
    waiting calls get theirs, and the holder returns with its own reply."""
    async with served(kind) as (chan, peer, record, server):
        first, second = new_call(chan), new_call(chan)
        got: dict[str, Any] = {}

        async def wait(name: str, call: Call) -> None:
            got[name] = await call.next()

        async with trio.open_nursery() as n:
            n.start_soon(wait, "first", first)
            await trio.testing.wait_all_tasks_blocked()
            holder = chan._reader
            assert holder is not server
            n.start_soon(wait, "second", second)
            await trio.testing.wait_all_tasks_blocked()
            assert chan._reader is holder  # the second waits for the holder to deliver
            batch = (
                encode_frame(Yield(second.cid, raw("for the second")))
                + encode_frame(Start(1, "m", "f", {}))
                + encode_frame(Return(first.cid, raw("for the first")))
            )
            await peer.send_all(batch)
        assert msgspec.msgpack.decode(got["first"].pld) == "for the first"
        assert msgspec.msgpack.decode(got["second"].pld) == "for the second"
        assert [type(m) for _, m in record] == [Yield, Start, Return]
        assert all(task is holder for task, _ in record)


@pytest.mark.parametrize("kind", KINDS)
@trio_test
async def test_a_cancelled_holder_hands_the_role_back_and_loses_no_bytes(kind):
    """Test that cancelling a caller while it holds the role (with half a frame read)
    gives the role back to the reader task, which completes that frame and the next."""
    async with served(kind) as (chan, peer, record, server):
        call = new_call(chan)
        frame = encode_frame(Yield(77, raw("x" * 100))) + encode_frame(Yield(79, raw("y")))
        with trio.CancelScope() as scope:

            async def cancel_when_half_read() -> None:
                await peer.send_all(frame[:20])
                with trio.fail_after(10):
                    while chan._decoder.buffered < 20:
                        await trio.sleep(0.01)
                assert chan._reader is holder
                scope.cancel()

            async with trio.open_nursery() as n:
                n.start_soon(call.next)
                await trio.testing.wait_all_tasks_blocked()
                holder = chan._reader
                assert holder is not server
                n.start_soon(cancel_when_half_read)
        assert scope.cancelled_caught
        assert record == []
        await peer.send_all(frame[20:])
        with trio.fail_after(10):
            while len(record) < 2:
                await trio.sleep(0.01)
        assert [(task, m.cid) for task, m in record] == [(server, 77), (server, 79)]
        assert msgspec.msgpack.decode(record[0][1].pld) == "x" * 100


async def wait_through(call: Call, chan: Channel, server: trio.lowlevel.Task, event: Any) -> list[BaseException]:
    """Wait for ``call``'s next message in a task that holds the read role while
    ``event()`` happens; the errors its wait raised."""
    errors: list[BaseException] = []

    async def wait() -> None:
        try:
            await call.next()
        except Exception as exc:
            errors.append(exc)

    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            n.start_soon(wait)
            await trio.testing.wait_all_tasks_blocked()
            assert chan._reader not in (None, server)
            await event()
    return errors


@pytest.mark.parametrize("kind", KINDS)
@trio_test
async def test_a_holder_learns_that_the_peer_hung_up(kind):
    """Test that a caller reading for itself when the peer closes the connection
    raises TransportClosed (through the reader task closing the channel)."""
    async with served(kind) as (chan, peer, _record, server):
        call = new_call(chan)
        errors = await wait_through(call, chan, server, peer.aclose)
        assert [type(e) for e in errors] == [TransportClosed]
        assert chan.closed


@trio_test
async def test_marking_the_channel_closed_wakes_a_holder():
    """Test that a channel marked closed (its actor exited) wakes a caller that waits
    on the socket for its reply, as it wakes one waiting on its call."""
    async with served("uds") as (chan, _peer, _record, server):
        call = new_call(chan)

        async def mark_closed() -> None:
            chan.mark_closed(None)

        errors = await wait_through(call, chan, server, mark_closed)
        assert [type(e) for e in errors] == [TransportClosed]


async def ask_parent(parent: str, x: int) -> list[int]:
    """Run in a child: call back into ``parent`` (sync and async functions) while the
    parent's calling task is the one reading this channel."""
    async with na.find_actor(parent) as portal:
        assert portal is not None
        return [await portal.run(plus_one, x=x), await portal.run(async_plus_one, x=x)]


def plus_one(x: int) -> int:
    return x + 1


async def async_plus_one(x: int) -> int:
    await trio.lowlevel.checkpoint()
    return x + 1


def test_calls_back_into_a_caller_that_reads_for_itself(reg):
    """Test that a child's calls into its parent, made while the parent's task waits
    for (and reads) the reply to its own call, are served, inline and as tasks."""

    async def main() -> None:
        async with na.open_root_actor(name="parent", enable_modules=[__name__], **reg), na.open_nursery() as n:
            portal = await n.start_actor("asker", enable_modules=[__name__])
            me = na.current_actor().name
            for x in range(3):
                assert await portal.run(ask_parent, parent=me, x=x) == [x + 1, x + 1]
            await portal.cancel_actor()

    trio.run(main)
