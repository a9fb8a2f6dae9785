"""Hostile and bad input against a running actor (a real child process): garbage, a
4 GiB frame header, unknown message types, unexposed functions, a replayed handshake,
a stalled peer, and a crowd of them. Each ends in a clear error or a dropped
connection; the actor keeps serving its real peers and leaks no file descriptor and
no task."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
import pytest
import trio
import trio.testing

import notebook_actors as na
from notebook_actors import _transport, testing
from notebook_actors._channel import connect, handshake_as_dialer, load_secret
from notebook_actors._codec import encode_frame
from notebook_actors._exceptions import HandshakeError
from notebook_actors.msg import Error, Ident, Return, Start, encoder
from notebook_actors.testing import trio_test

TIMEOUT = 60


# --- run inside the target actor ------------------------------------------------------


def echo(x):
    return x


def _count_tasks(task) -> int:
    return 1 + sum(_count_tasks(t) for n in task.child_nurseries for t in n.child_tasks)


async def resources() -> dict:
    """Open file descriptors and live trio tasks of this actor, once every task here
    has run and blocked (so connections being dropped have finished dropping)."""
    await trio.testing.wait_all_tasks_blocked()
    actor = na.current_actor()
    return {
        "fds": len(os.listdir("/proc/self/fd")),
        "tasks": _count_tasks(trio.lowlevel.current_root_task()),
        "peers": sorted(str(uid) for uid in actor._peers),
    }


# --- the hostile side -------------------------------------------------------------------


def ident(name: str = "intruder") -> Ident:
    return Ident((name, uuid.uuid4().hex), os.getpid(), None)


async def read_until_eof(stream: trio.abc.Stream) -> bytes:
    """Everything the actor sends until it drops us (the hang guard is the caller's)."""
    data = b""
    while True:
        try:
            chunk = await stream.receive_some()
        except trio.BrokenResourceError:  # reset by peer: dropped too
            return data
        if not chunk:
            return data
        data += chunk


async def raw_connect(addr: str) -> trio.abc.Stream:
    """A byte stream to the actor under the transport's own layer (TLS keyed by the
    tree's secret for TCP), so what follows reaches the actor's handshake itself."""
    return await _transport.connect(addr, secret=load_secret())


async def authenticated(addr: str, secret: bytes) -> tuple[trio.abc.Stream, bytes]:
    stream = await raw_connect(addr)
    _, rest = await handshake_as_dialer(stream, secret, ident("authenticated"), addr)
    return stream, rest


async def read_frames(stream: trio.abc.Stream, count: int, rest: bytes = b"") -> list:
    """The next ``count`` runtime messages from the actor."""
    from notebook_actors._codec import FrameDecoder
    from notebook_actors.msg import msg_decoder

    decoder = FrameDecoder(msg_decoder)
    msgs = decoder.feed(rest) if rest else []
    while len(msgs) < count:
        chunk = await stream.receive_some()
        assert chunk, "the actor dropped an authenticated peer"
        msgs.extend(decoder.feed(chunk))
    return msgs


@pytest.fixture
def tree_kw(monkeypatch):
    # a stalled peer is dropped after this long in the child (read at its import)
    monkeypatch.setenv("NOTEBOOK_ACTORS_HANDSHAKE_TIMEOUT", "0.5")
    return {"registry_addrs": [testing.private_registry_addr()]}


@pytest.fixture(params=["uds", "tcp"])
def target_bind(request):
    """The target actor listens on either transport: the same attacks, the same outcome."""
    return None if request.param == "uds" else ("127.0.0.1", 0)


async def target_and_baseline(n, bind=None) -> tuple[na.Portal, str, dict]:
    portal = await n.start_actor("target", enable_modules=[__name__], bind_addr=bind)
    addr = (await portal.run_from_ns("self", "tree_snapshot"))["addr"]
    assert addr.startswith("tcp:127.0.0.1:" if bind else "uds:")
    # a child registers concurrently with its start-up: the baseline is taken once the
    # registry (this root) has its entry, or the registering task would count as a leak
    root = na.current_actor()
    while not any(key.startswith("target.") for key in await root.get_registry()):
        await trio.sleep(0.01)
    return portal, addr, await portal.run(resources)


async def assert_unharmed(portal: na.Portal, baseline: dict) -> None:
    assert await portal.run(echo, x={"still": "serving"}) == {"still": "serving"}
    after = await portal.run(resources)
    assert after == baseline, f"leaked: before {baseline}, after {after}"


@asynccontextmanager
async def attacked_target(tree_kw: dict, bind) -> AsyncIterator[tuple[na.ActorNursery, na.Portal, str]]:
    """A target actor to attack in the block (yields its nursery, portal and address);
    after the block it must still serve and hold what it held before, then it stops."""
    with trio.fail_after(TIMEOUT):
        async with na.open_nursery(**tree_kw) as n:
            portal, addr, baseline = await target_and_baseline(n, bind)
            yield n, portal, addr
            await assert_unharmed(portal, baseline)
            await portal.cancel_actor()


async def dropped_after(addr: str, payload: bytes = b"") -> bytes:
    """Connect, send ``payload`` (if any), and return all the actor sent before it
    dropped the connection."""
    stream = await raw_connect(addr)
    try:
        if payload:
            await stream.send_all(payload)
    except trio.BrokenResourceError:  # dropped before it spoke (a crowd evicts its own oldest)
        got = b""
    else:
        got = await read_until_eof(stream)
    finally:
        await stream.aclose()
    return got


class TestBeforeHandshake:
    @trio_test
    async def test_garbage_is_dropped(self, tree_kw, target_bind):
        """Test that garbage instead of a handshake is dropped (after the actor's own
        challenge, and nothing else) and leaks nothing."""
        async with attacked_target(tree_kw, target_bind) as (_n, _portal, addr):
            got = await dropped_after(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + os.urandom(512))
            assert len(got) < 100  # only the Hello challenge

    @trio_test
    async def test_four_gib_header_is_dropped(self, tree_kw, target_bind):
        """Test that a 4 GiB frame header in place of the handshake is dropped at once."""
        async with attacked_target(tree_kw, target_bind) as (_n, _portal, addr):
            await dropped_after(addr, b"\xff\xff\xff\xff")

    @trio_test
    async def test_rpc_without_handshake_is_not_run(self, tree_kw, tmp_path, target_bind):
        """Test that an RPC sent without a handshake is dropped and never runs."""
        marker = tmp_path / "ran"
        with trio.fail_after(TIMEOUT):
            async with na.open_nursery(**tree_kw) as n:
                portal = await n.start_actor("target", enable_modules=[__name__, "pathlib"], bind_addr=target_bind)
                addr = (await portal.run_from_ns("self", "tree_snapshot"))["addr"]
                stream = await raw_connect(addr)
                call = Start(0, "notebook_actors._runtime", "os.system", {"command": f"touch {marker}"})
                await stream.send_all(encode_frame(call))
                await read_until_eof(stream)
                await stream.aclose()
                assert await portal.run(echo, x=1) == 1
                assert not marker.exists()
                await portal.cancel_actor()

    @trio_test
    async def test_replayed_handshake_is_dropped(self, tree_kw, target_bind):
        """Test that replaying the bytes of another peer's successful handshake fails."""

        class Recording(trio.abc.Stream):
            def __init__(self, inner):
                self.inner, self.sent = inner, bytearray()

            async def send_all(self, data):
                self.sent += data
                await self.inner.send_all(data)

            async def wait_send_all_might_not_block(self):
                await self.inner.wait_send_all_might_not_block()

            async def receive_some(self, max_bytes=None):
                return await self.inner.receive_some(max_bytes)

            async def aclose(self):
                await self.inner.aclose()

        async with attacked_target(tree_kw, target_bind) as (n, _portal, addr):
            secret = n._actor.secret
            legit = Recording(await raw_connect(addr))
            await handshake_as_dialer(legit, secret, ident("legit"), addr, target=addr)
            await legit.aclose()
            replay = await raw_connect(addr)
            await replay.send_all(bytes(legit.sent))
            await read_until_eof(replay)  # dropped
            await replay.aclose()

    @trio_test
    async def test_stalled_peer_is_dropped(self, tree_kw, target_bind):
        """Test that a peer that connects and never answers the challenge is dropped
        after the handshake timeout."""
        async with attacked_target(tree_kw, target_bind) as (_n, _portal, addr):
            await dropped_after(addr)  # Hello, then EOF once the timeout hits

    @trio_test
    async def test_wrong_secret_cannot_call(self, tree_kw, target_bind):
        """Test that a peer with the wrong secret gets HandshakeError and no channel."""
        async with attacked_target(tree_kw, target_bind) as (_n, _portal, addr):
            with pytest.raises(HandshakeError):
                await connect(addr, b"a-guess-at-the-secret-0123456789", ident())

    @trio_test
    async def test_crowd_of_intruders(self, tree_kw, target_bind):
        """Test that 40 concurrent hostile connections (garbage, huge headers, silence)
        are all dropped while the real peer keeps calling, and nothing leaks."""
        payloads = [b"\x00garbage", b"\xff\xff\xff\xff", b""]
        async with attacked_target(tree_kw, target_bind) as (_n, portal, addr):

            async def intruder(i):
                await dropped_after(addr, payloads[i % len(payloads)])

            async with trio.open_nursery() as crowd:
                for i in range(40):
                    crowd.start_soon(intruder, i)
                for i in range(20):
                    assert await portal.run(echo, x=i) == i


class TestAfterHandshake:
    @trio_test
    async def test_oversized_frame_closes_only_that_channel(self, tree_kw, target_bind):
        """Test that an authenticated peer announcing a 4 GiB frame loses its channel,
        and only that one."""
        async with attacked_target(tree_kw, target_bind) as (n, _portal, addr):
            stream, _ = await authenticated(addr, n._actor.secret)
            await stream.send_all(b"\xff\xff\xff\xff" + b"\x00" * 64)
            await read_until_eof(stream)
            await stream.aclose()

    @trio_test
    async def test_unknown_type_and_bad_fields_answered(self, tree_kw, target_bind):
        """Test that a well-formed message of an unknown type, and a call with a field
        of the wrong type, get clear errors and the channel keeps working."""
        async with attacked_target(tree_kw, target_bind) as (n, _portal, addr):
            stream, rest = await authenticated(addr, n._actor.secret)
            frames = [
                encoder.encode(["teleport", 2, {"to": "mars"}]),
                encoder.encode(["start", 4, __name__, "echo", ["not", "a", "dict"], "call", 0, None]),
            ]
            await stream.send_all(b"".join(len(f).to_bytes(4, "big") + f for f in frames))
            await stream.send_all(encode_frame(Start(6, __name__, "echo", {"x": "ok"})))
            unknown, bad_call, good = await read_frames(stream, 3, rest)
            assert isinstance(unknown, Error) and unknown.cid is None
            assert "teleport" in unknown.err.message
            assert isinstance(bad_call, Error) and bad_call.cid == 4
            assert bad_call.err.type_name == "MsgTypeError" and "$[4]" in bad_call.err.message
            assert isinstance(good, Return) and msgspec.msgpack.decode(good.pld) == "ok"
            await stream.aclose()

    @trio_test
    async def test_unexposed_functions_refused(self, tree_kw, target_bind):
        """Test that calls to a module that is not enabled, to an Actor method not
        offered over RPC, and with a call id of the wrong parity are refused with
        errors that say so, and run nothing."""
        async with attacked_target(tree_kw, target_bind) as (n, _portal, addr):
            stream, rest = await authenticated(addr, n._actor.secret)
            calls = [
                Start(0, "os", "system", {"command": "true"}),
                Start(2, "self", "resolve", {"ns": "os", "func": "system", "code": None}),
                Start(3, __name__, "echo", {"x": 1}),  # odd ids belong to the acceptor
                Start(4, __name__, "os.system", {"command": "true"}),  # through an import
            ]
            await stream.send_all(b"".join(encode_frame(c) for c in calls))
            replies = {m.cid: m for m in await read_frames(stream, 4, rest)}
            assert replies[4].err.type_name == "ModuleNotExposed"
            assert "reaches into module 'os'" in replies[4].err.message
            assert replies[0].err.type_name == "ModuleNotExposed"
            assert "enable_modules=['os']" in replies[0].err.message
            assert replies[2].err.type_name == "ModuleNotExposed"
            assert "no RPC method 'resolve'" in replies[2].err.message
            assert "invalid" in replies[3].err.message
            await stream.aclose()


@trio_test
async def test_refusal_is_logged_with_peer(caplog):
    """Test that a refused connection is logged naming the peer's process and user."""
    import logging

    with trio.fail_after(TIMEOUT):
        with caplog.at_level(logging.WARNING, logger="notebook_actors"):
            async with na.open_root_actor(registry_addrs=[testing.private_registry_addr()]) as actor:
                await dropped_after(actor.addr, b"\x00\x00\x00\x01\xc1")
    assert "dropped an unauthenticated peer" in caplog.text
    assert f"pid {os.getpid()} (user id {os.getuid()})" in caplog.text


@trio_test
async def test_unauthorised_call_is_logged(caplog):
    """Test that a refused call (module not enabled) is logged by the refusing actor
    and the caller gets ModuleNotExposed."""
    import logging

    with trio.fail_after(TIMEOUT):
        with caplog.at_level(logging.WARNING, logger="notebook_actors"):
            async with na.open_root_actor(registry_addrs=[testing.private_registry_addr()]):
                async with na.get_registry() as me:  # an in-process portal to ourselves
                    with pytest.raises(na.ModuleNotExposed):
                        await me.run_from_ns("shutil", "rmtree", path="/nonexistent")
    assert "refused a call: module 'shutil' is not enabled" in caplog.text


@trio_test
async def test_handshake_flood_evicts_its_own_oldest(monkeypatch):
    """Test that a source over its limit of pending handshakes loses its own oldest
    connection (closed without a word), that the newcomer is challenged, and that a
    real peer still gets in and the count returns to zero."""
    from notebook_actors._channel import connect
    from notebook_actors._transport import _admission

    monkeypatch.setattr(_admission, "PER_SOURCE", 2)
    with trio.fail_after(TIMEOUT):
        async with na.open_root_actor(registry_addrs=[testing.private_registry_addr()]) as actor:
            stalled = []
            for _ in range(2):
                stream = await raw_connect(actor.addr)
                assert await stream.receive_some()  # the challenge: it is in its handshake
                stalled.append(stream)
            newest = await raw_connect(actor.addr)
            assert await newest.receive_some()  # challenged too
            assert await read_until_eof(stalled[0]) == b""  # the oldest went to make room
            assert actor.pending_handshakes == 2
            for stream in [*stalled, newest]:
                await stream.aclose()
            await trio.testing.wait_all_tasks_blocked()  # the actor saw them go
            assert actor.pending_handshakes == 0
            chan = await connect(actor.addr, actor.secret, ident("legit"))
            assert chan.uid == actor.uid
            await chan.aclose()


@trio_test
async def test_gate_makes_room_from_the_biggest_source():
    """Test the budget's rules on their own: a full gate drops the oldest pending
    connection of the source holding the most slots, never the newcomer's."""
    from notebook_actors._transport._admission import DropLog, HandshakeGate

    gate = HandshakeGate(DropLog("test gate", interval=3600), budget=3, per_source=2)
    outcome: dict[str, bool] = {}

    async def pending(name: str, source: str, task_status=trio.TASK_STATUS_IGNORED) -> None:
        with gate.admit(source) as slot:
            task_status.started()
            await trio.sleep_forever()
        outcome[name] = slot.evicted

    async with trio.open_nursery() as n:
        await n.start(pending, "flood-1", "uid 65534")
        await n.start(pending, "flood-2", "uid 65534")
        await n.start(pending, "mine-1", "uid 0")
        assert gate.pending == 3
        await n.start(pending, "mine-2", "uid 0")  # full: the flood's oldest goes
        await trio.testing.wait_all_tasks_blocked()
        assert outcome == {"flood-1": True}
        await n.start(pending, "mine-3", "uid 0")  # its own limit: its own oldest goes
        await trio.testing.wait_all_tasks_blocked()
        assert outcome == {"flood-1": True, "mine-1": True}
        assert gate.pending == 3 and gate.drops.total == 2
        n.cancel_scope.cancel()
    assert gate.pending == 0
