"""The security boundary of pickled data, against a real actor process.

Unpickling runs code, so a pickle must never be loaded from a peer that has not
passed the tree's handshake: sent in place of the handshake, it runs nothing, and a
shared-memory descriptor sent with it is not kept (the actor holds no more
descriptors than before). The control case shows the check can fail: the very same
pickle, sent by a peer that did pass the handshake, is loaded (inside the tree,
pickles are trusted like functions shipped by value).
"""

from __future__ import annotations

import array
import os
import pathlib
import socket
import uuid

import pytest
import trio
import trio.testing
from msgspec.msgpack import Ext

import notebook_actors as na
from notebook_actors import _payload, _transport, testing
from notebook_actors._channel import handshake_as_dialer, load_secret
from notebook_actors._codec import DATA_FLAG, ENTRY, HEADER, SHARED, FrameDecoder, encode_frame
from notebook_actors.msg import Ident, Return, Start, encoder, msg_decoder
from notebook_actors.testing import trio_test

TIMEOUT = 60


def echo(x):
    return x


async def fd_count() -> int:
    """This actor's open descriptors, once every task here has run and blocked (a
    connection being dropped has finished dropping)."""
    await trio.testing.wait_all_tasks_blocked()
    return len(os.listdir("/proc/self/fd"))


class _Touch:
    """Loading this pickle creates ``path``: proof that it was loaded."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (self.path,))


def pickle_ext(obj) -> Ext:
    """``obj`` as the runtime's pickle extension, built by hand as a hostile peer would."""
    import pickle

    name = b"tests.Touch"
    return Ext(_payload.PICKLE_EXT, _payload._EXT_HEAD.pack(0, len(name)) + name + pickle.dumps(obj))


def call_frame(marker: pathlib.Path, cid: int = 0) -> bytes:
    return encode_frame(Start(cid, __name__, "echo", {"x": pickle_ext(_Touch(marker))}, pickled=1))


def data_frame_with_segment(cid: int) -> bytes:
    """A data frame announcing one shared-memory buffer (its descriptor goes with it)."""
    body = encoder.encode(Return(cid, encoder.encode(None)))
    return (DATA_FLAG | len(body)).to_bytes(HEADER, "big") + (1).to_bytes(4, "big") + ENTRY.pack(4096, SHARED, 1) + body


async def read_until_eof(stream: trio.abc.Stream) -> None:
    while True:
        try:
            if not await stream.receive_some():
                return
        except trio.BrokenResourceError:
            return


@pytest.fixture
def tree_kw(monkeypatch):
    monkeypatch.setenv("NOTEBOOK_ACTORS_HANDSHAKE_TIMEOUT", "0.5")  # read at the child's import
    return {"registry_addrs": [testing.private_registry_addr()]}


async def target(n) -> tuple[na.Portal, str, int]:
    portal = await n.start_actor("target", enable_modules=[__name__])
    addr = (await portal.run_from_ns("self", "tree_snapshot"))["addr"]
    assert addr.startswith("uds:")
    return portal, addr, await portal.run(fd_count)


@trio_test
async def test_a_pickle_before_the_handshake_is_never_loaded(tree_kw, tmp_path):
    """Test that a call carrying a pickle, sent in place of the handshake together
    with a memfd descriptor (SCM_RIGHTS), is dropped: the pickle ran nothing, the
    actor holds no more descriptors than before and serves its real peers."""
    marker = tmp_path / "loaded"
    with trio.fail_after(TIMEOUT):
        async with na.open_nursery(**tree_kw) as n:
            portal, addr, fds_before = await target(n)
            stream = await _transport.connect(addr, secret=load_secret())
            memfd = os.memfd_create("notebook_actors", os.MFD_CLOEXEC)
            try:
                os.ftruncate(memfd, 4096)
                frames = call_frame(marker) + data_frame_with_segment(2) + call_frame(marker, cid=4)
                anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [memfd]))]
                await stream.socket.sendmsg([frames], anc)
            finally:
                os.close(memfd)
            await read_until_eof(stream)
            await stream.aclose()
            assert not marker.exists(), "a pickle from an unauthenticated peer was loaded"
            assert await portal.run(echo, x="still serving") == "still serving"
            assert await portal.run(fd_count) == fds_before
            await portal.cancel_actor()


@trio_test
async def test_the_same_pickle_after_the_handshake_is_loaded(tree_kw, tmp_path):
    """Test (the control case) that the very same frame, sent by a peer that proved
    the tree's secret, is loaded: the boundary is the handshake, and the check above
    would see a loaded pickle."""
    marker = tmp_path / "loaded"
    with trio.fail_after(TIMEOUT):
        async with na.open_nursery(**tree_kw) as n:
            portal, addr, _ = await target(n)
            stream = await _transport.connect(addr, secret=load_secret())
            me = Ident(("authenticated", uuid.uuid4().hex), os.getpid(), None)
            _, rest = await handshake_as_dialer(stream, n._actor.secret, me, addr)
            await stream.send_all(call_frame(marker))
            decoder = FrameDecoder(msg_decoder)
            msgs = decoder.feed(rest) if rest else []
            while not msgs:
                msgs = decoder.feed(await stream.receive_some())
            assert isinstance(msgs[0], Return) and msgs[0].cid == 0
            assert marker.exists()
            await stream.aclose()
            await portal.cancel_actor()
