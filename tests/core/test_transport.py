"""One conformance suite for every byte transport (UDS, TCP, an in-memory stream pair),
then what is specific to each: socket files and their permissions, TCP's default bind
address, address parsing, and a tree whose actors talk over either transport."""

from __future__ import annotations

import os
import socket
import stat
import tempfile
import uuid
from contextlib import asynccontextmanager

import msgspec
import pytest
import trio
import trio.testing

import notebook_actors as na
from notebook_actors import _transport, testing
from notebook_actors._channel import Channel, handshake_as_acceptor, handshake_as_dialer
from notebook_actors._exceptions import FrameError, HandshakeError, TransportClosed
from notebook_actors._transport._uds import runtime_dir, sweep_stale
from notebook_actors.msg import Error, Ident, Return, Stop, encoder
from notebook_actors.testing import trio_test

SECRET = b"conformance-secret-0123456789abcdef"
KINDS = ["uds", "tcp", "memory"]


def short_sock_path() -> str:
    return f"{tempfile.gettempdir()}/na-t-{uuid.uuid4().hex[:10]}.sock"


@asynccontextmanager
async def stream_pair(kind: str):
    """A connected (client, server) byte-stream pair over ``kind``."""
    if kind == "memory":
        client, server = trio.testing.memory_stream_pair()
        yield client, server
        return
    addr = f"uds:{short_sock_path()}" if kind == "uds" else "tcp:127.0.0.1:0"
    listeners, bound = await _transport.listen(addr)
    try:
        client = await _transport.connect(bound)
        server = await listeners[0].accept()
        try:
            yield client, server
        finally:
            await client.aclose()
            await server.aclose()
    finally:
        for listener in listeners:
            await listener.aclose()
        _transport.cleanup(bound)


def ident(name: str) -> Ident:
    return Ident((name, uuid.uuid4().hex), os.getpid(), None)


@asynccontextmanager
async def channel_pair(kind: str, dial_secret: bytes = SECRET, accept_secret: bytes = SECRET):
    """Two handshaked channels over ``kind`` with their writers running."""
    async with stream_pair(kind) as (client, server):
        me_d, me_a = ident("dialer"), ident("acceptor")
        results = {}

        async def dial():
            results["dial"] = await handshake_as_dialer(client, dial_secret, me_d, "acceptor")

        async def accept():
            results["accept"] = await handshake_as_acceptor(server, accept_secret, me_a, "dialer")

        with trio.fail_after(10):
            async with trio.open_nursery() as n:
                n.start_soon(dial)
                n.start_soon(accept)
        dialer, acceptor = Channel(dialer=True), Channel(dialer=False)
        dialer.attach(client, *results["dial"])
        acceptor.attach(server, *results["accept"])
        async with trio.open_nursery() as n:
            n.start_soon(dialer.run_writer)
            n.start_soon(acceptor.run_writer)
            yield dialer, acceptor
            n.cancel_scope.cancel()


async def receive_one(chan: Channel):
    with trio.fail_after(10):
        [msg] = await chan.receive_batch()
    return msg


def raw(value) -> msgspec.Raw:
    return msgspec.Raw(encoder.encode(value))


@pytest.mark.parametrize("kind", KINDS)
class TestConformance:
    @trio_test
    async def test_byte_stream_contract(self, kind):
        """Test that the transport's streams pass trio's own two-way stream checks."""

        async def maker():
            if kind == "memory":
                return trio.testing.memory_stream_pair()
            addr = f"uds:{short_sock_path()}" if kind == "uds" else "tcp:127.0.0.1:0"
            listeners, bound = await _transport.listen(addr)
            try:
                client = await _transport.connect(bound)
                return client, await listeners[0].accept()
            finally:
                await listeners[0].aclose()
                _transport.cleanup(bound)

        with trio.fail_after(60):
            await trio.testing.check_two_way_stream(maker, None)

    @trio_test
    async def test_handshake_exchanges_identities(self, kind):
        """Test that both sides learn the other's uid and pid from the handshake."""
        async with channel_pair(kind) as (dialer, acceptor):
            assert dialer.uid[0] == "acceptor" and acceptor.uid[0] == "dialer"
            assert dialer.peer_pid == acceptor.peer_pid == os.getpid()
            assert dialer.connected() and acceptor.connected()

    @trio_test
    async def test_messages_both_ways_in_order(self, kind):
        """Test that messages arrive whole and in order in both directions."""
        async with channel_pair(kind) as (dialer, acceptor):
            for i in range(200):
                dialer.send_nowait(Return(i * 2, raw({"i": i})))
            got = []
            while len(got) < 200:
                with trio.fail_after(10):
                    got.extend(await acceptor.receive_batch())
            assert [m.cid for m in got] == [i * 2 for i in range(200)]
            assert msgspec.msgpack.decode(got[-1].pld) == {"i": 199}
            await acceptor.send(Stop(1))
            assert await receive_one(dialer) == Stop(1)

    @trio_test
    async def test_large_message(self, kind):
        """Test that an 8 MiB message crosses intact (many socket reads, one frame)."""
        blob = os.urandom(8 * 1024 * 1024)
        async with channel_pair(kind) as (dialer, acceptor):
            async with trio.open_nursery() as n:
                n.start_soon(dialer.send, Return(0, raw(blob)))
                msg = await receive_one(acceptor)
            assert msgspec.msgpack.decode(msg.pld) == blob

    @trio_test
    async def test_wrong_secret_fails_both_sides(self, kind):
        """Test that a dialer with another secret is refused, and that it sees the
        refusal too (no channel is made)."""
        with pytest.raises(BaseExceptionGroup) as info:
            async with channel_pair(kind, dial_secret=b"not-the-secret-at-all-xxxxxxxxxxx"):
                pytest.fail("a channel was made with a wrong secret")
        errors = info.value.exceptions
        assert any(isinstance(e, HandshakeError) and "failed the handshake" in str(e) for e in errors)

    @trio_test
    async def test_peer_close_is_transport_closed(self, kind):
        """Test that the peer closing its end ends the other's receive with TransportClosed."""
        async with channel_pair(kind) as (dialer, acceptor):
            await dialer.aclose()
            with trio.fail_after(10), pytest.raises(TransportClosed):
                while True:
                    await acceptor.receive_batch()
            assert dialer.closed

    @trio_test
    async def test_send_after_close_raises(self, kind):
        """Test that sending on a closed channel raises TransportClosed naming the peer."""
        async with channel_pair(kind) as (dialer, _):
            await dialer.aclose()
            with pytest.raises(TransportClosed, match="acceptor"):
                dialer.send_nowait(Stop(0))

    @trio_test
    async def test_garbage_after_handshake_is_frame_error(self, kind):
        """Test that bytes that are not msgpack, after a good handshake, give FrameError."""
        async with channel_pair(kind) as (dialer, acceptor):
            await dialer._stream.send_all(b"\x00\x00\x00\x02\xc1\xc1")
            with trio.fail_after(10), pytest.raises(FrameError, match="undecodable"):
                await acceptor.receive_batch()

    @trio_test
    async def test_unknown_message_is_answered_and_channel_lives(self, kind):
        """Test that a well-formed message of an unknown type is answered with an Error
        (with the call id of a malformed Start) and the channel keeps working."""
        async with channel_pair(kind) as (dialer, acceptor):
            bad_type = encoder.encode(["future_msg", 4, 1])
            bad_start = encoder.encode(["start", 6, "mod", "fn", "not-a-dict"])
            frames = b"".join(len(b).to_bytes(4, "big") + b for b in (bad_type, bad_start))
            await dialer._stream.send_all(frames)
            dialer.send_nowait(Stop(8))
            assert await receive_one(acceptor) == Stop(8)
            replies = []
            while len(replies) < 2:
                with trio.fail_after(10):
                    replies.extend(await dialer.receive_batch())
            assert [type(r) for r in replies] == [Error, Error]
            assert replies[0].cid is None and "future_msg" in replies[0].err.message
            assert replies[1].cid == 6 and replies[1].err.type_name == "MsgTypeError"
            assert acceptor.frames_refused == 2


class TestUDS:
    def test_runtime_dir_private(self):
        """Test that the socket directory belongs to this user with mode 0700."""
        path = runtime_dir()
        st = path.stat()
        assert st.st_uid == os.getuid()
        assert stat.S_IMODE(st.st_mode) == 0o700

    @trio_test
    async def test_socket_file_mode_and_cleanup(self):
        """Test that a listening socket file has mode 0600 and cleanup removes it."""
        addr = f"uds:{short_sock_path()}"
        listeners, bound = await _transport.listen(addr)
        path = bound[len("uds:") :]
        try:
            assert stat.S_ISSOCK(os.stat(path).st_mode)
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        finally:
            await listeners[0].aclose()
            _transport.cleanup(bound)
        assert not os.path.exists(path)

    @trio_test
    async def test_stale_socket_file_taken_over(self):
        """Test that binding over a socket file nobody listens on (a killed actor's)
        works, and binding over a live one fails with EADDRINUSE."""
        path = short_sock_path()
        dead = socket.socket(socket.AF_UNIX)
        dead.bind(path)
        dead.close()  # the file stays, nothing listens
        listeners, bound = await _transport.listen(f"uds:{path}")
        try:
            with pytest.raises(OSError, match="in use"):
                await _transport.listen(f"uds:{path}")
        finally:
            await listeners[0].aclose()
            _transport.cleanup(bound)

    def test_sweep_removes_files_of_dead_pids_only(self, tmp_path):
        """Test that the sweep removes socket files whose pid is gone, keeps live ones
        and ignores files not named by the runtime."""
        dead_pid = 2**22 + 12345  # above pid_max defaults: never a live process
        dead = tmp_path / f"worker-{dead_pid}-abcd1234.sock"
        live = tmp_path / f"worker-{os.getpid()}-abcd1234.sock"
        other = tmp_path / "registry.sock"
        for f in (dead, live, other):
            f.touch()
        sweep_stale(tmp_path)
        assert not dead.exists() and live.exists() and other.exists()

    @trio_test
    async def test_actor_socket_removed_on_exit(self):
        """Test that an actor's socket file lives in the private directory while it
        runs and is removed when it exits."""
        async with na.open_root_actor(registry_addrs=[testing.private_registry_addr()]) as actor:
            path = actor.accept_addr[len("uds:") :]
            assert os.path.dirname(path) == str(runtime_dir())
            assert os.path.exists(path)
        assert not os.path.exists(path)


class TestTCP:
    @trio_test
    async def test_binds_loopback_unless_told(self):
        """Test that a TCP address without a host listens on 127.0.0.1 only."""
        listeners, bound = await _transport.listen("tcp::0")
        try:
            host, port = listeners[0].socket.getsockname()[:2]
            assert host == "127.0.0.1" and bound == f"tcp:127.0.0.1:{port}"
        finally:
            await listeners[0].aclose()

    @trio_test
    async def test_connect_to_nothing_is_oserror(self):
        """Test that dialing a port nobody listens on raises OSError."""
        listeners, bound = await _transport.listen("tcp:127.0.0.1:0")
        await listeners[0].aclose()  # the port is now free
        with pytest.raises(OSError):
            await _transport.connect(bound)


class TestAddresses:
    @pytest.mark.parametrize(
        "given, expected",
        [
            (("127.0.0.1", 1616), "tcp:127.0.0.1:1616"),
            (["10.0.0.2", "99"], "tcp:10.0.0.2:99"),
            ("localhost:5000", "tcp:localhost:5000"),
            ("/run/x.sock", "uds:/run/x.sock"),
            ("uds:/a.sock", "uds:/a.sock"),
            ("tcp:h:1", "tcp:h:1"),
        ],
    )
    def test_normalize(self, given, expected):
        """Test that user-facing address forms are read as the right transport."""
        assert _transport.normalize_addr(given) == expected

    @pytest.mark.parametrize("bad", ["nocolon", 1616, ("a", "b", "c")])
    def test_normalize_rejects(self, bad):
        """Test that an unreadable address is a ValueError saying what forms work."""
        with pytest.raises(ValueError, match=r"\(host, port\) or a socket path"):
            _transport.normalize_addr(bad)

    @pytest.mark.parametrize(
        "given, public",
        [
            ("tcp:127.0.0.1:1616", ("127.0.0.1", 1616)),
            (["127.0.0.1", 1616], ("127.0.0.1", 1616)),  # a tuple after a trip on the wire
            (("::1", 7), ("::1", 7)),
            ("tcp:[::1]:7", ("::1", 7)),
            ("uds:/a.sock", "uds:/a.sock"),
            (None, None),
        ],
    )
    def test_public_form(self, given, public):
        """Test that the public form of a TCP address is tractor's (host, port) tuple,
        that a Unix socket stays its 'uds:' string, and that the public form reads back
        as the same internal address."""
        assert _transport.public_addr(given) == public
        if given is not None:
            assert _transport.normalize_addr(_transport.public_addr(given)) == _transport.normalize_addr(given)

    @pytest.mark.parametrize(
        "addr, loopback",
        [
            ("tcp:127.0.0.1:1616", True),
            ("tcp:127.3.2.1:1", True),
            ("tcp:localhost:1616", True),
            ("tcp:[::1]:1616", True),
            ("tcp:10.0.0.2:1616", False),
            ("tcp:example.org:1616", False),
            ("uds:/a.sock", False),
        ],
    )
    def test_loopback(self, addr, loopback):
        """Test which registry addresses count as this host's loopback TCP."""
        assert _transport.is_loopback_tcp(addr) is loopback

    def test_unknown_scheme(self):
        """Test that an unknown transport scheme is refused with the forms that work."""
        with pytest.raises(ValueError, match="expected 'uds:/path' or 'tcp:host:port'"):
            _transport.get_transport("udp:1.2.3.4:5")


def add(a: int, b: int) -> int:
    return a + b


def my_addr() -> str:
    return na.current_actor().accept_addr


@pytest.mark.parametrize("bind", ["uds", "tcp"])
@trio_test
async def test_tree_over_transport(bind):
    """Test that a child bound to either transport serves RPC, is found through the
    registry at that address, and the root calls it there."""
    bind_addr = f"uds:{short_sock_path()}" if bind == "uds" else ("127.0.0.1", 0)
    with trio.fail_after(60):
        async with na.open_nursery(registry_addrs=[testing.private_registry_addr()], bind_addr=bind_addr) as n:
            assert na.current_actor().addr.startswith(f"{bind}:")
            portal = await n.start_actor(
                "worker", enable_modules=[__name__], bind_addr=bind_addr if bind == "tcp" else None
            )
            addr = await portal.run(my_addr)
            async with na.wait_for_actor("worker") as found:
                assert await found.run(add, a=2, b=3) == 5
                assert found.channel.raddr == _transport.public_addr(addr)
            await portal.cancel_actor()
