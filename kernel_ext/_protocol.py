"""The kernel protocol: what a notebook actor and the kernel tell each other.

One msgspec Struct per message, a tagged union per direction, one encoder and one
decoder each (msgspec's ``asyncio-kv`` shape). Two paths carry them:

- **the output connection** of a running cell: a Unix socket from the actor to the
  kernel, written by a thread of the actor's own (:mod:`._cell_output`), so output of
  blocking code arrives while the cell still runs. Actor → kernel: :data:`Output`
  events and :class:`InputRequest`; kernel → actor: :class:`InputReply`. Frames are
  length-prefixed (4 bytes, big-endian).
- **the cell's call** (``Portal.run``): one request, one answer, the encoded
  :class:`CellDone` (the outcome, and whether output follows on the output
  connection). A cell that printed nothing opens no output connection at all, so a
  trivial cell costs one round trip.
- **the cell line**: a Unix socket of a local notebook actor's own, which the kernel
  reaches from its asyncio loop (a cell then needs no hand-off to the kernel's trio
  guest run): :class:`LineHello`, then one :class:`RunCell` per cell, each answered
  with the encoded :class:`CellDone`, one at a time. Length-prefixed frames too.

Imported by the actors too: it must stay light (no IPython, no trio).
"""

from __future__ import annotations

import struct
from typing import Any, Literal

import msgspec

#: The largest frame either side accepts (a display bundle with a big image fits).
MAX_FRAME = 256 * 1024 * 1024
_HEADER = struct.Struct(">I")
HEADER_SIZE = _HEADER.size


class _Message(msgspec.Struct, tag_field="kind", tag=lambda name: name.lower(), omit_defaults=True):
    pass


# -- the output connection: actor → kernel ----------------------------------------------
class Hello(_Message):
    """The first frame: which cell this connection carries (the kernel's token)."""

    token: str


class Stream(_Message):
    """Text the cell wrote to ``sys.stdout`` or ``sys.stderr`` (``\\r`` kept as is)."""

    name: Literal["stdout", "stderr"]
    text: str


class Display(_Message):
    """A mime bundle to show; ``update`` replaces the output ``transient["display_id"]``."""

    data: dict[str, Any]
    metadata: dict[str, Any] = {}
    transient: dict[str, Any] = {}
    update: bool = False


class Clear(_Message):
    """Clear the cell's output (``wait``: when the next output arrives)."""

    wait: bool = False


class InputRequest(_Message):
    """``input()``/``getpass()`` in the cell: ask the notebook's user."""

    prompt: str
    password: bool = False


class End(_Message):
    """The cell's output is complete; nothing follows on this connection."""


Output = Stream | Display | Clear
ActorToKernel = Hello | Stream | Display | Clear | InputRequest | End


# -- the output connection: kernel → actor ------------------------------------------------
class InputReply(_Message):
    """The user's answer to an :class:`InputRequest`; ``error`` when there is none."""

    value: str = ""
    error: Literal["no-stdin", "interrupted", "eof"] | None = None


KernelToActor = InputReply


# -- the cell's outcome (the context's result) ----------------------------------------------
class CellOk(_Message):
    """The cell ran to its end.

    ``data``/``metadata``: the last expression's mime bundle as the actor rendered it
    (None: no value). ``value``: the value itself, encoded, when it can travel (for a
    several-actor cell's ``{path: value}``), else None.
    """

    data: dict[str, Any] | None = None
    metadata: dict[str, Any] = {}
    value: bytes | None = None


class CellFailed(_Message):
    """The cell raised; ``traceback`` is trimmed to the user's own frames."""

    ename: str
    evalue: str
    traceback: list[str]
    pid: int


class CellInterrupted(_Message):
    """The cell was interrupted (cancelled, or SIGINT in blocking code)."""

    pid: int


Outcome = CellOk | CellFailed | CellInterrupted


class CellDone(msgspec.Struct, omit_defaults=True):
    """What a cell's call returns: how it ended, and whether it opened its output
    connection (then the kernel reads it up to its :class:`End`; else it has none)."""

    outcome: Outcome
    output: bool = False


# -- the cell line: a notebook actor's own socket for its cells ------------------------------
class LineHello(msgspec.Struct):
    """The kernel's first frame on a cell line: the token the actor gave for it."""

    token: str


class RunCell(msgspec.Struct, omit_defaults=True):
    """Run one cell; on the cell line the answer is the encoded :class:`CellDone`.
    The fields are :func:`~._cell_runtime.run_cell`'s arguments (the portal call
    passes them too)."""

    code: str
    label: str
    count: Any
    output: list[str]
    offset: int = 1
    header: str = ""
    filename: str | None = None


# -- an actor's identity (for the kernel's table) ------------------------------------------
class ActorInfo(msgspec.Struct, omit_defaults=True):
    """Who a notebook actor is: pid, parent pid, uid ``[name, uuid]``."""

    pid: int
    ppid: int
    uid: list[str]


_encoder = msgspec.msgpack.Encoder()
_done_decoder = msgspec.msgpack.Decoder(CellDone)
_info_decoder = msgspec.msgpack.Decoder(ActorInfo)
_value_decoder = msgspec.msgpack.Decoder()
_run_decoder = msgspec.msgpack.Decoder(RunCell)
_line_hello_decoder = msgspec.msgpack.Decoder(LineHello)


def encode(message: msgspec.Struct) -> bytes:
    """The message as msgpack bytes (no frame header)."""
    return _encoder.encode(message)


def frame(message: msgspec.Struct) -> bytes:
    """The message as one length-prefixed frame."""
    body = _encoder.encode(message)
    return _HEADER.pack(len(body)) + body


def frame_length(header: bytes) -> int:
    """The body length a frame header announces; ValueError when it is too large."""
    (length,) = _HEADER.unpack(header)
    if length > MAX_FRAME:
        raise ValueError(f"a kernel-protocol frame of {length} bytes is over the limit of {MAX_FRAME}")
    return length


def decode_done(data: bytes) -> CellDone:
    return _done_decoder.decode(data)


def decode_info(data: bytes) -> ActorInfo:
    return _info_decoder.decode(data)


def decode_run(data: bytes) -> RunCell:
    return _run_decoder.decode(data)


def decode_line_hello(data: bytes) -> LineHello:
    return _line_hello_decoder.decode(data)


def frame_bytes(body: bytes) -> bytes:
    """Already encoded ``body`` as one length-prefixed frame."""
    return _HEADER.pack(len(body)) + body


def encode_value(value: Any) -> bytes | None:
    """``value`` encoded when msgpack can carry it, else None (it is shown by its repr)."""
    try:
        return _encoder.encode(value)
    except (TypeError, ValueError, OverflowError):
        return None


def decode_value(data: bytes) -> Any:
    return _value_decoder.decode(data)


class Decoders:
    """One decoder per direction (msgspec decoders are not shared across threads)."""

    def __init__(self) -> None:
        self.from_actor = msgspec.msgpack.Decoder(ActorToKernel)
        self.from_kernel = msgspec.msgpack.Decoder(KernelToActor)
