"""Channels: the handshake (what it proves, what it refuses), the tree's secret, and
how a channel describes its peer."""

from __future__ import annotations

import logging
import os
import stat
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from notebook_actors import _channel, _transport
from notebook_actors._channel import (
    HANDSHAKE_MAX_FRAME,
    RelayRefused,
    accept_mac,
    describe_peer,
    dial_mac,
    handshake_as_acceptor,
    handshake_as_dialer,
    load_secret,
)
from notebook_actors._codec import encode_frame
from notebook_actors._exceptions import HandshakeError
from notebook_actors.msg import Hello, Ident, Proof, Start, Welcome, encoder, handshake_decoder
from notebook_actors.testing import trio_test

SECRET = b"channel-test-secret-0123456789abcdef"


def ident(name: str) -> Ident:
    return Ident((name, uuid.uuid4().hex), os.getpid(), None)


class Recording(trio.abc.Stream):
    """A stream wrapper that keeps a copy of every byte sent through it."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner, self.sent = inner, bytearray()

    async def send_all(self, data) -> None:
        self.sent += data
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes=None):
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def accept_expecting_refusal(server: trio.abc.Stream, match: str) -> None:
    with trio.fail_after(10), pytest.raises(HandshakeError, match=match):
        await handshake_as_acceptor(server, SECRET, ident("acceptor"), "test acceptor")


@asynccontextmanager
async def refused_dialer(match: str) -> AsyncIterator[trio.abc.Stream]:
    """The dialing end of an in-memory connection whose acceptor, running beside the
    block, must refuse it with a HandshakeError matching ``match``."""
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as n:
        n.start_soon(accept_expecting_refusal, server, match)
        yield client


async def read_hello(client: trio.abc.Stream) -> Hello:
    data = b""
    while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:4], "big"):
        data += await client.receive_some()
    return handshake_decoder.decode(data[4:])


class TestHandshake:
    @trio_test
    async def test_replayed_handshake_is_refused(self):
        """Test that the bytes of a successful dialer handshake, replayed on a new
        connection, fail: the acceptor's challenge is fresh every time."""
        client, server = trio.testing.memory_stream_pair()
        recording = Recording(client)
        async with trio.open_nursery() as n:
            n.start_soon(handshake_as_acceptor, server, SECRET, ident("acceptor"), "a")
            await handshake_as_dialer(recording, SECRET, ident("dialer"), "d")
        captured = bytes(recording.sent)
        assert captured  # the Proof frame

        async with refused_dialer("failed the handshake") as client2:
            await read_hello(client2)
            await client2.send_all(captured)

    @trio_test
    async def test_proof_is_bound_to_identity(self):
        """Test that a valid answer to the challenge, sent with another identity (what a
        relaying man in the middle would do), is refused."""
        async with refused_dialer("failed the handshake") as client:
            hello = await read_hello(client)
            honest, forged = ident("honest"), ident("forged")
            nonce = os.urandom(32)
            mac = dial_mac(SECRET, hello.nonce, nonce, honest, "")
            await client.send_all(encode_frame(Proof(mac, nonce, forged, "")))

    @trio_test
    async def test_accept_role_answer_is_not_a_dial_proof(self):
        """Test that an HMAC made for the acceptor role cannot be reflected as a dialer's proof."""
        async with refused_dialer("failed the handshake") as client:
            hello = await read_hello(client)
            me, nonce = ident("reflector"), os.urandom(32)
            mac = accept_mac(SECRET, hello.nonce, nonce, me, "", me, "")
            await client.send_all(encode_frame(Proof(mac, nonce, me, "")))

    @trio_test
    async def test_proof_for_another_address_is_refused_as_relay(self):
        """Test that a valid proof the dialer made for another address (what a relay
        squatting that address forwards) is refused as a relay, and that the dialer
        gets no welcome: nothing after it is read."""
        client, server = trio.testing.memory_stream_pair()

        async def acceptor():
            with pytest.raises(RelayRefused, match=r"made for tcp:127\.0\.0\.1:1616, not for uds:/run/me\.sock"):
                await handshake_as_acceptor(server, SECRET, ident("victim"), "a", own="uds:/run/me.sock")
            await server.aclose()

        async with trio.open_nursery() as n:
            n.start_soon(acceptor)
            with trio.fail_after(10), pytest.raises(HandshakeError, match="refused our handshake"):
                await handshake_as_dialer(client, SECRET, ident("victim-root"), "d", target="tcp:127.0.0.1:1616")

    @trio_test
    async def test_welcome_binds_the_acceptor_address(self):
        """Test that the dialer refuses a welcome computed for another address than
        the one it meant (an acceptor cannot claim to be somewhere else)."""
        client, server = trio.testing.memory_stream_pair()

        async def acceptor_elsewhere():
            await server.send_all(encode_frame(Hello(_channel.PROTOCOL_VERSION, nonce_a := os.urandom(32))))
            data = await server.receive_some()
            proof = handshake_decoder.decode(data[4:])
            me = ident("elsewhere")
            mac = accept_mac(SECRET, nonce_a, proof.nonce, proof.ident, proof.target, me, "uds:/other.sock")
            await server.send_all(encode_frame(Welcome(mac, me)))

        async with trio.open_nursery() as n:
            n.start_soon(acceptor_elsewhere)
            with trio.fail_after(10), pytest.raises(HandshakeError, match="failed to prove"):
                await handshake_as_dialer(client, SECRET, ident("dialer"), "d", target="uds:/meant.sock")
            await client.aclose()

    @trio_test
    async def test_an_alias_is_accepted(self):
        """Test that a proof made for an address the acceptor declares as an alias (a
        forwarded port) is accepted, and both sides learn each other's identity."""
        client, server = trio.testing.memory_stream_pair()
        me_a, me_d, got = ident("acceptor"), ident("dialer"), {}

        async def acceptor():
            got["a"], _ = await handshake_as_acceptor(
                server, SECRET, me_a, "a", own="tcp:10.0.0.1:1617", also_known_as=("tcp:127.0.0.1:9000",)
            )

        async with trio.open_nursery() as n:
            n.start_soon(acceptor)
            got["d"], _ = await handshake_as_dialer(client, SECRET, me_d, "d", target="tcp:127.0.0.1:9000")
        assert got["a"] == me_d and got["d"] == me_a

    @trio_test
    async def test_message_before_handshake_is_refused(self):
        """Test that a runtime message sent instead of the handshake (an RPC attempt
        by a peer that skips authentication) is refused, not run."""
        async with refused_dialer("invalid handshake") as client:
            await client.send_all(encode_frame(Start(0, "os", "system", {"command": "true"})))

    @trio_test
    async def test_oversized_handshake_frame_is_refused(self):
        """Test that a handshake frame over the small handshake limit is refused from
        its header alone."""
        async with refused_dialer(f"limit {HANDSHAKE_MAX_FRAME}") as client:
            await client.send_all(b"\xff\xff\xff\xff")

    @trio_test
    async def test_short_nonce_is_refused(self):
        """Test that a dialer choosing a short (guessable) counter-challenge is refused."""
        async with refused_dialer("failed the handshake") as client:
            hello = await read_hello(client)
            me, nonce = ident("lazy"), b"\x00"
            mac = dial_mac(SECRET, hello.nonce, nonce, me, "")
            await client.send_all(encode_frame(Proof(mac, nonce, me, "")))

    def test_stalled_peer_times_out(self):
        """Test that a peer that connects and says nothing is dropped after
        HANDSHAKE_TIMEOUT (virtual time) with a HandshakeError naming it."""

        async def main():
            _client, server = trio.testing.memory_stream_pair()
            start = trio.current_time()
            with pytest.raises(
                HandshakeError, match=r"a from an in-process stream did not complete the handshake within 3 s"
            ):
                await handshake_as_acceptor(server, SECRET, ident("acceptor"), "a")
            assert trio.current_time() - start == pytest.approx(_channel.HANDSHAKE_TIMEOUT)

        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))

    @trio_test
    async def test_acceptor_failing_proof_is_refused_by_dialer(self):
        """Test that the dialer checks the acceptor too: an acceptor with another
        secret cannot pose as the actor the dialer meant to reach."""
        client, server = trio.testing.memory_stream_pair()
        impostor_secret = b"impostor-secret-0123456789abcdef"

        async def impostor():
            # squats the address: challenges, takes any proof, answers with its own key
            await server.send_all(encode_frame(Hello(_channel.PROTOCOL_VERSION, os.urandom(32))))
            data = await server.receive_some()
            proof = handshake_decoder.decode(data[4:])
            me = ident("impostor")
            mac = accept_mac(impostor_secret, b"", proof.nonce, proof.ident, proof.target, me, proof.target)
            await server.send_all(encode_frame(Welcome(mac, me)))

        async with trio.open_nursery() as n:
            n.start_soon(impostor)
            with pytest.raises(HandshakeError, match="failed"):
                await handshake_as_dialer(client, SECRET, ident("dialer"), "d")
            await client.aclose()

    @trio_test
    async def test_refusal_names_unix_peer_process(self):
        """Test that a refused Unix-socket peer is described by its pid and user id."""
        path = f"{tempfile.gettempdir()}/na-c-{uuid.uuid4().hex[:10]}.sock"
        listeners, bound = await _transport.listen(f"uds:{path}")
        try:
            client = await _transport.connect(bound)
            server = await listeners[0].accept()
            assert describe_peer(server) == f"pid {os.getpid()} (user id {os.getuid()})"
            async with trio.open_nursery() as n:
                n.start_soon(accept_expecting_refusal, server, f"pid {os.getpid()}")
                await client.send_all(b"GET / HTTP/1.0\r\n\r\n")
            await client.aclose()
            await server.aclose()
        finally:
            await listeners[0].aclose()
            _transport.cleanup(bound)


class TestSecret:
    def test_bytes_secret_as_is(self):
        """Test that a bytes secret is used as given."""
        assert load_secret(b"abc") == b"abc"

    def test_empty_secret_refused(self, tmp_path):
        """Test that an empty secret (bytes or an empty key file) is a ValueError."""
        with pytest.raises(ValueError, match="empty"):
            load_secret(b"")
        key = tmp_path / "key"
        key.write_bytes(b"\n")
        key.chmod(0o600)
        with pytest.raises(ValueError, match="empty"):
            load_secret(str(key))

    def test_key_file_by_path(self, tmp_path):
        """Test that a str or Path secret is read from that key file (whitespace stripped)."""
        key = tmp_path / "key"
        key.write_bytes(b"s3cret-key\n")
        key.chmod(0o600)
        assert load_secret(str(key)) == load_secret(key) == b"s3cret-key"

    def test_missing_key_file_says_how_to_make_one(self, tmp_path):
        """Test that a missing explicit key file is a FileNotFoundError with the fix."""
        with pytest.raises(FileNotFoundError, match="chmod 600"):
            load_secret(tmp_path / "nope")

    def test_default_key_created_private(self, tmp_path, monkeypatch):
        """Test that the default key file is created on first use with mode 0600 (its
        directory 0700), and the same key is read back afterwards."""
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
        first = load_secret()
        path = tmp_path / "notebook_actors" / "secret"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert len(first) >= 32 and load_secret() == first
        assert not [p for p in path.parent.iterdir() if p.name != "secret"]  # no temp files left

    def test_default_key_not_overwritten_by_a_racing_creator(self, tmp_path, monkeypatch):
        """Test that a second creator (a program starting at the same moment) keeps
        the first key instead of replacing it."""
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
        path = _channel.default_secret_path()
        _channel._create_key_file(path)
        first = path.read_bytes()
        _channel._create_key_file(path)
        assert path.read_bytes() == first

    def test_readable_default_key_refused(self, tmp_path, monkeypatch):
        """Test that a default key file other users can read is refused with the fix."""
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
        load_secret()
        _channel.default_secret_path().chmod(0o644)
        with pytest.raises(PermissionError, match="chmod 600"):
            load_secret()

    def test_readable_explicit_key_warns(self, tmp_path, caplog):
        """Test that an explicit key file readable by others is used with a warning."""
        key = tmp_path / "key"
        key.write_bytes(b"shared-key")
        key.chmod(0o644)
        with caplog.at_level(logging.WARNING, logger="notebook_actors.channel"):
            assert load_secret(key) == b"shared-key"
        assert "other users may read it" in caplog.text


handshake_inputs = st.one_of(
    st.binary(max_size=600),
    st.lists(
        st.one_of(
            st.none(),
            st.integers(-(2**63), 2**63),
            st.text(max_size=8),
            st.binary(max_size=40),
            st.lists(st.integers(-9, 9), max_size=3),
        ),
        max_size=5,
    ).map(lambda fields: encoder.encode(["proof", *fields])),
).map(lambda body: len(body).to_bytes(4, "big") + body if body[:1] != b"\x00" else body)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(handshake_inputs)
def test_any_handshake_bytes_only_handshake_error(data):
    """Test that whatever a connecting peer sends instead of a proof (arbitrary bytes,
    a proof with wrong-typed fields), the acceptor ends with HandshakeError, never
    another exception and never a channel."""

    async def main():
        async with refused_dialer("handshake") as client:
            await read_hello(client)
            await client.send_all(data)
            await client.aclose()  # EOF: an incomplete frame must not hang the acceptor

    trio.run(main)


def test_stalled_acceptor_is_handshake_error():
    """Test that dialing something that accepts but never speaks (a squatter on the
    registry port) ends in HandshakeError, an OSError like any failed connection."""

    async def main():
        client, _server = trio.testing.memory_stream_pair()
        with pytest.raises(OSError, match="did not complete the handshake"):
            await handshake_as_dialer(client, SECRET, ident("dialer"), "the registry")

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


class TestHandshakeFuzz:
    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        st.one_of(
            st.binary(max_size=1024),
            # well-formed Proof frames with arbitrary fields: the decoder lets them
            # through, only the MAC and address checks can refuse them
            st.builds(
                lambda mac, nonce, name, target, step: (
                    bytes([step]) + encode_frame(Proof(mac, nonce, Ident((name, "0" * 32), 1, None), target))
                ),
                st.binary(max_size=40),
                st.binary(max_size=40),
                st.text(max_size=20),
                st.text(max_size=40),
                st.integers(0, 255),
            ),
        )
    )
    def test_no_dialer_input_is_accepted_or_crashes(self, data):
        """Test that whatever a dialer without the key sends (garbage, truncated or
        well-formed proofs with any fields, in any chunking), the acceptor ends with a
        HandshakeError: never an accepted channel, never another exception
        (fuzz/fuzz_handshake.py runs the same check under atheris)."""
        import importlib.util

        spec = importlib.util.spec_from_file_location(
            "fuzz_handshake", os.path.join(os.path.dirname(__file__), "..", "..", "fuzz", "fuzz_handshake.py")
        )
        fuzz = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(fuzz)
        fuzz.check_one(data)
