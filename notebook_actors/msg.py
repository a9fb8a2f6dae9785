"""The wire protocol: one msgspec Struct per message, a tagged union on the wire.

Schema evolution rules (these structs are array-like, so order is the schema): new
fields go at the end and get a default; a field's type never changes; a tag is never
reused.

Payloads (``pld``) travel as :class:`msgspec.Raw`: the channel decodes only the
envelope, and the receiving context decodes the payload with its own (possibly typed)
decoder, so a payload that does not decode fails that context, never the channel.
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec
from msgspec import Raw, Struct

from ._payload import deferring_ext_hook, enc_hook

__all__ = [
    "ActorConfig",
    "Cancel",
    "Credit",
    "Error",
    "ErrorInfo",
    "Handshake",
    "Ident",
    "Msg",
    "NamespacePath",
    "Reject",
    "Release",
    "Return",
    "SpawnSpec",
    "Start",
    "Started",
    "Stop",
    "Yield",
    "payload_head",
]

Uid = tuple[str, str]


class NamespacePath(str):
    """A function's address: ``'package.module:function'``."""

    @classmethod
    def from_ref(cls, fn: Any) -> NamespacePath:
        return cls(f"{fn.__module__}:{fn.__qualname__}")

    def to_tuple(self) -> tuple[str, str]:
        mod, _, name = self.partition(":")
        return mod, name


class Ident(Struct, array_like=True):
    """Who is at the other end of a channel."""

    uid: Uid
    pid: int
    #: where others find it (the address it registers: its loopback TCP listener when
    #: its tree's registry is on TCP, else its own socket)
    addr: str | None = None
    #: its parent's address (None for a root): who to ask how it ended, for an actor
    #: that is not our child (see ``Context._crash_of_peer``)
    parent_addr: str | None = None


class Msg(Struct, array_like=True, tag=True):
    """Base of every runtime message. ``cid`` names the call/context it belongs to."""


class Start(Msg, tag="start"):
    """Ask the peer to run ``ns:func`` (``kind``: ``call``, ``context`` or ``stream``)."""

    cid: int
    ns: str
    func: str
    kwargs: dict[str, Any]
    kind: str = "call"
    credit: int = 0  # receive window the caller grants a ``stream`` callee up front
    code: bytes | None = None  # the function by value (cloudpickle), trusted tree only
    pickled: int = 0  # how many argument values travel pickled (see _payload)
    credit_bytes: int = 0  # the byte window granted with ``credit`` (0: not limited)


class Started(Msg, tag="started"):
    cid: int
    pld: Raw


class Yield(Msg, tag="yield"):
    cid: int
    pld: Raw


class Stop(Msg, tag="stop"):
    """The sender closed its side of the stream."""

    cid: int


class Return(Msg, tag="return"):
    cid: int
    pld: Raw


class ErrorInfo(Struct, array_like=True):
    """A boxed exception: everything needed to rebuild it as a RemoteActorError."""

    type_name: str
    type_module: str
    message: str
    tb_str: str
    src_uid: Uid | None
    relay_path: list[Uid] = []
    canceller: Uid | None = None
    exitcode: int | None = None
    #: the machine it was raised on, when not its root's (a launcher's host)
    src_host: str | None = None
    #: the exception itself, pickled (its args and attributes, e.g. an array), when it
    #: pickles and is not too large; loaded only on request (RemoteActorError.exception)
    exc: bytes | None = None


class Error(Msg, tag="error"):
    """The call failed (``cid``), or the channel itself did (``cid`` is None)."""

    cid: int | None
    err: ErrorInfo


class Cancel(Msg, tag="cancel"):
    """Cancel the task serving call ``cid``."""

    cid: int


class Credit(Msg, tag="credit"):
    """The receiver consumed ``n`` more messages of stream ``cid`` (and ``nbytes``
    bytes of their payloads): send that many more. A first grant with ``nbytes`` 0
    does not limit bytes (a peer that counts messages only)."""

    cid: int
    n: int
    nbytes: int = 0


class Reject(Msg, tag="reject"):
    """The receiver of call ``cid`` refused a payload that does not match its declared
    type (``err`` says where); the call goes on. The sender's next send raises it."""

    cid: int
    err: ErrorInfo


class Release(Msg, tag="release"):
    """The receiver dropped its last view of these shared-memory segments (ids the
    sender gave them): the sender may reuse them. Handled by the channel itself."""

    segs: list[int]


class ActorConfig(Struct, kw_only=True):
    """How one actor runs. Written once, by ``open_root_actor`` or by the parent's
    ``start_actor``; the actor holds it as ``actor.config``, and a child receives it in
    its :class:`SpawnSpec`."""

    name: str
    #: the second half of the actor's uid (a fresh uuid when empty)
    uid: str = ""
    enable_modules: list[str] = []
    loglevel: str | None = None
    debug_mode: bool = False
    registry_addrs: list[str] = []
    #: where the parent listens (None: this actor is a root)
    parent_addr: str | None = None
    #: the root's script, loaded in children as ``__mp_main__`` (functions defined there)
    parent_main_path: str | None = None
    #: the root ran ``python -m this.module``: load it by name (relative imports work)
    parent_main_module: str | None = None
    #: where to accept connections (None: a private Unix socket)
    bind_addr: str | None = None
    infect_asyncio: bool = False
    #: how this actor starts its own children (None: the default backend)
    start_method: str | None = None
    #: refuse pickled values on every context, both ways (start_actor(typed_only=True))
    typed_only: bool = False
    #: forwarded addresses dialers reach this actor through (see docs/security.md)
    also_known_as: list[str] = []
    #: listen on loopback TCP here as well (``tcp:127.0.0.1:0``): the tree's registry
    #: was given as a loopback TCP address (None: derived from it for a root)
    tcp_bind: str | None = None


class SpawnSpec(Msg, tag="spawnspec"):
    """A child's boot record, from its parent (on the child's stdin, so the secret
    stays off the command line): the actor's config and how to start its process."""

    config: ActorConfig
    secret: bytes = b""
    sys_path: list[str] = []
    #: addresses to dial another way (see ``_transport.set_routes``), for actors on
    #: another machine
    routes: dict[str, str] = {}
    #: where the actor runs, if not on its parent's machine (a launcher's host)
    host: str | None = None


AnyMsg = Start | Started | Yield | Stop | Return | Error | Cancel | Credit | SpawnSpec | Reject | Release


class Hello(Struct, array_like=True, tag="hello"):
    """Handshake 1 (acceptor → dialer): a fresh challenge."""

    version: int
    nonce: bytes


class Proof(Struct, array_like=True, tag="proof"):
    """Handshake 2 (dialer → acceptor): the answer, a counter-challenge, who it is and
    the address it meant to reach (bound into the answer, so it cannot be relayed)."""

    mac: bytes
    nonce: bytes
    ident: Ident
    target: str = ""


class Welcome(Struct, array_like=True, tag="welcome"):
    """Handshake 3 (acceptor → dialer): the acceptor's answer and identity."""

    mac: bytes
    ident: Ident


Handshake = Hello | Proof | Welcome

# Reused codec objects: building them per message costs more than encoding. Values
# msgpack cannot encode are pickled where they sit (see _payload); a call's pickled
# arguments are unpickled by the call, not while the channel decodes its message.
encoder = msgspec.msgpack.Encoder(enc_hook=enc_hook)
msg_decoder = msgspec.msgpack.Decoder(AnyMsg, ext_hook=deferring_ext_hook)
handshake_decoder = msgspec.msgpack.Decoder(Handshake)
any_decoder = msgspec.msgpack.Decoder()


@functools.cache
def _tag_head(tag: str) -> bytes:
    # a 3-array (array-like tagged struct: tag, cid, payload), then the tag
    return b"\x93" + encoder.encode(tag)


def payload_head(tag: str, cid: int) -> bytes:
    """The encoding of a ``tag`` message (``"return"``, ``"yield"``: tag, cid,
    payload) up to its payload, so a sender can encode the payload in place after it."""
    return _tag_head(tag) + encoder.encode(cid)
