"""Length-prefixed msgpack frames: the byte layer under every channel.

A frame is a 4-byte big-endian length followed by that many bytes of msgpack. Frames
are appended to one output buffer, so a backlog leaves in a single write (batching
without a batch message, and without delaying a lone message).

The decoder is the first code that touches a peer's bytes, so it is written for
hostile input: the announced size is checked before a byte of the body is buffered,
a partial frame is kept as a list of chunks (joined once, when complete: no quadratic
copying of a large frame), and every way a body can fail to decode ends in
:class:`FrameError` (or, for a well-formed frame of the wrong shape, an
:class:`InvalidFrame` the channel answers and skips).

Data frames carry out-of-band buffers (a pickled array's data, see ``_payload``):
the header's top bit is set, and after it come the number of buffers, a table of
their sizes and kinds (bytes that follow in the stream, or a shared-memory segment
whose descriptor came with the frame), the control message (limited like any frame),
then the inline buffers' bytes. The data is announced before a byte of it is
accepted, limited per frame (:data:`MAX_DATA`), and received into memory allocated
once at its announced size, never joined or copied again.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import Any, NamedTuple

import msgspec

from . import _payload, _shm
from ._exceptions import FrameError
from .msg import encoder

HEADER = 4
#: Largest frame a channel accepts (bytes); larger ones close the channel. For a data
#: frame this limits the control message; its buffers are limited by MAX_DATA.
MAX_FRAME = int(os.environ.get("NOTEBOOK_ACTORS_MAX_FRAME", 64 * 1024 * 1024))
#: Largest total of out-of-band buffers one frame may announce (default: the RAM).
MAX_DATA = int(
    os.environ.get("NOTEBOOK_ACTORS_MAX_DATA", 0) or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
)
#: Most buffers one data frame may announce.
MAX_BUFFERS = 4096
DATA_FLAG = 0x8000_0000
#: One buffer in a data frame's table: size, kind, shared-memory segment id.
ENTRY = struct.Struct(">QII")
INLINE, SHARED = 0, 1


def append_frame(out: bytearray, msg: Any, head: bytes = b"") -> list[memoryview]:
    """Encode ``msg`` as one frame at the end of ``out``; ``head``, if given, is
    already encoded msgpack that goes first in the frame (a message's fixed prefix).

    Returns the out-of-band buffers the message comes with (usually none: an empty
    list not to be changed); with some, the caller makes the frame a data frame
    (:func:`make_data_frame` or :func:`append_inline`).

    Raises:
        TypeError: ``msg`` holds a value msgpack cannot encode (``out`` is unchanged).
        ValueError: the encoded message is larger than :data:`MAX_FRAME`.
    """
    start = len(out)
    out += b"\0\0\0\0"
    out += head
    try:
        encoder.encode_into(msg, out, len(out))
    except BaseException:
        del out[start:]
        _payload.take_collected()
        raise
    size = len(out) - start - HEADER
    if size > MAX_FRAME:
        del out[start:]
        _payload.take_collected()
        raise over_the_frame_limit(size)
    out[start : start + HEADER] = size.to_bytes(HEADER, "big")
    return _payload.take_collected()


#: Bytes of a frame that are not its payload (the message's tag, ids, names), at most
#: for the messages that carry values; a payload must leave them room.
ENVELOPE_ROOM = 4096


def over_the_frame_limit(size: int) -> ValueError:
    """The error for a message of ``size`` bytes that no frame may carry."""
    return ValueError(
        f"its message of {size} bytes exceeds the frame limit of {MAX_FRAME} bytes (NOTEBOOK_ACTORS_MAX_FRAME); "
        "large data travels outside the message as numpy arrays (np.frombuffer(data, np.uint8) for bytes)"
    )


def check_payload_size(pld: Any) -> None:
    """Raise :func:`over_the_frame_limit` for an encoded payload no frame can carry
    (before a message holding it is queued: past that, it would fail the channel).

    Raises:
        ValueError: the payload's message part is too large.
    """
    raw = pld.raw if type(pld) is _payload.Packed else pld
    if len(raw) > MAX_FRAME - ENVELOPE_ROOM:
        raise over_the_frame_limit(len(raw))


def make_data_frame(out: bytearray, start: int, entries: list[tuple[int, int, int]]) -> None:
    """Turn the frame at ``out[start:]`` (just appended) into a data frame announcing
    ``entries`` (size, kind, segment id) for its buffers; the inline ones' bytes are
    the caller's to send right after it."""
    size = int.from_bytes(out[start : start + HEADER], "big")
    out[start : start + HEADER] = (DATA_FLAG | size).to_bytes(HEADER, "big")
    table = bytearray(len(entries).to_bytes(4, "big"))
    for entry in entries:
        table += ENTRY.pack(*entry)
    out[start + HEADER : start + HEADER] = table


def append_inline(out: bytearray, start: int, bufs: list[memoryview]) -> None:
    """Make the frame at ``out[start:]`` a data frame with ``bufs`` copied in line
    (for byte streams that cannot take buffers of their own)."""
    make_data_frame(out, start, [(b.nbytes, INLINE, 0) for b in bufs])
    for buf in bufs:
        out += buf


def encode_frame(msg: Any) -> bytes:
    out = bytearray()
    bufs = append_frame(out, msg)
    if bufs:
        append_inline(out, 0, bufs)
    return bytes(out)


class InvalidFrame(NamedTuple):
    """A complete, well-formed msgpack frame that is not a message we know.

    Returned in place of a message (only by decoders built with ``skip_invalid``), so
    the channel can answer the sender and keep serving: the frame boundaries are
    intact, nothing is out of step. ``tag`` and ``cid`` are what could be read of the
    envelope (None when unreadable).
    """

    size: int
    error: str
    tag: str | None
    cid: int | None


class _Envelope(msgspec.Struct, array_like=True):
    """The first two fields every runtime message starts with; the rest is skipped."""

    tag: str
    cid: Any = None


_envelope_decoder = msgspec.msgpack.Decoder(_Envelope)


def _read_envelope(body: Any) -> tuple[str | None, int | None]:
    try:
        env = _envelope_decoder.decode(body)
    except Exception:  # the envelope is a courtesy: unreadable means unanswerable
        return None, None
    cid = env.cid if type(env.cid) is int else None
    return env.tag, cid


class _Filling:
    """The buffers of a data frame whose control message has arrived: inline ones are
    allocated at their announced size and filled as bytes come; shared ones are
    mapped from the descriptors that came with the frame."""

    __slots__ = ("_i", "_pos", "_views", "bufs", "control", "size")

    def __init__(self, control: bytes, size: int, bufs: list[Any], views: list[memoryview]) -> None:
        self.control, self.size, self.bufs, self._views = control, size, bufs, views
        self._i, self._pos = 0, 0
        self._skip_full()

    def _skip_full(self) -> None:
        views = self._views
        while self._i < len(views) and self._pos >= views[self._i].nbytes:
            self._i += 1
            self._pos = 0

    @property
    def done(self) -> bool:
        return self._i >= len(self._views)

    def target(self) -> memoryview:
        """Where the next inline bytes go (for reading from the socket directly)."""
        return self._views[self._i][self._pos :]

    def advance(self, n: int) -> None:
        self._pos += n
        self._skip_full()

    def take(self, data: memoryview) -> int:
        """Copy what belongs to the buffers from ``data``; return the bytes used."""
        used = 0
        while not self.done and used < len(data):
            dst = self.target()
            n = min(len(dst), len(data) - used)
            dst[:n] = data[used : used + n]
            used += n
            self.advance(n)
        return used


class FrameDecoder:
    """Turns a byte stream into messages, frame by frame.

    ``feed`` returns every complete message; a partial frame waits for more bytes.
    While a data frame's inline buffers arrive, :meth:`fill_target` is the memory the
    next bytes belong to, so the caller can read into it directly (:meth:`filled`).

    Raises (from ``feed``):
        FrameError: a header over ``max_frame``, a data frame announcing too much, or a
            body that is not msgpack (or, without ``skip_invalid``, not a valid
            message), naming the peer, the size and the limit. The stream is unusable
            after it: close the channel. Messages decoded from the same chunk before
            the bad frame are in ``exc.decoded``.
    """

    def __init__(
        self,
        decoder: msgspec.msgpack.Decoder[Any],
        *,
        max_frame: int = MAX_FRAME,
        max_data: int = MAX_DATA,
        peer: str = "peer",
        skip_invalid: bool = False,
        take_fd: Callable[[], int | None] | None = None,
        on_release: Callable[[int], None] | None = None,
    ) -> None:
        self._decoder = decoder
        self._max = max_frame
        self._max_data = max_data
        self._chunks: list[bytes] = []
        self._pending = 0  # bytes held in _chunks
        self._need = HEADER  # bytes needed before parsing can make progress
        self._skip_invalid = skip_invalid
        self._take_fd = take_fd
        self._on_release = on_release or (lambda _seg: None)
        self._fill: _Filling | None = None
        self.peer = peer

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held back."""
        return self._pending

    def fill_target(self) -> memoryview | None:
        """The inline buffer memory the next bytes belong to, if a data frame is
        being received (read into it, then call :meth:`filled`)."""
        fill = self._fill
        return None if fill is None else fill.target()

    def filled(self, n: int) -> list[Any]:
        """``n`` bytes were read into :meth:`fill_target`; the message, once complete."""
        fill = self._fill
        assert fill is not None
        fill.advance(n)
        out: list[Any] = []
        if fill.done:
            self._finish_fill(out)
        return out

    def close(self) -> None:
        """Drop a partly received data frame (its memory and mappings go with it)."""
        self._fill = None
        self._chunks.clear()
        self._pending = 0

    def feed(self, data: bytes) -> list[Any]:
        out: list[Any] = []
        if self._fill is not None:
            used = self._fill.take(memoryview(data))
            if not self._fill.done:
                return out
            self._finish_fill(out)
            data = data[used:]
            if not data:
                return out
        if self._chunks:
            self._chunks.append(data)
            self._pending += len(data)
            if self._pending < self._need:
                return out
            buf = b"".join(self._chunks)
            self._chunks.clear()
        else:
            buf = bytes(data)
        self._pending, self._need = 0, HEADER
        view = memoryview(buf)
        pos, end = 0, len(buf)
        while end - pos >= HEADER:
            size = int.from_bytes(view[pos : pos + HEADER], "big")
            if size & DATA_FLAG:
                used = self._start_data_frame(view, pos, size & ~DATA_FLAG, out)
                if used == 0:
                    break
                pos += used
                continue
            if size > self._max:
                raise self._error(
                    f"frame from {self.peer} announces {size} bytes, over the limit of {self._max} bytes "
                    "(raise NOTEBOOK_ACTORS_MAX_FRAME if the peer is one of yours)",
                    out,
                )
            if end - pos - HEADER < size:
                self._need = HEADER + size
                break
            out.append(self._decode(view[pos + HEADER : pos + HEADER + size], size, out))
            pos += HEADER + size
        if pos < end:
            rest = bytes(view[pos:])
            self._chunks.append(rest)
            self._pending = len(rest)
        return out

    def _start_data_frame(self, view: memoryview, pos: int, size: int, out: list[Any]) -> int:
        """Parse a data frame's announcement and control message at ``pos`` and take
        what of its buffers is in ``view``; return the bytes used, 0 if incomplete."""
        if size > self._max:
            raise self._error(
                f"data frame from {self.peer} announces a {size}-byte control message, over the limit of "
                f"{self._max} bytes",
                out,
            )
        avail = len(view) - pos
        if avail < HEADER + 4:
            self._need = HEADER + 4
            return 0
        count = int.from_bytes(view[pos + HEADER : pos + HEADER + 4], "big")
        if not 0 < count <= MAX_BUFFERS:
            raise self._error(f"data frame from {self.peer} announces {count} buffers (limit {MAX_BUFFERS})", out)
        table_end = pos + HEADER + 4 + count * ENTRY.size
        if len(view) < table_end + size:
            self._need = table_end + size - pos
            return 0
        entries = [ENTRY.unpack_from(view, pos + HEADER + 4 + i * ENTRY.size) for i in range(count)]
        total = sum(e[0] for e in entries)
        if total > self._max_data:
            raise self._error(
                f"data frame from {self.peer} announces {total} bytes of buffers, over the limit of "
                f"{self._max_data} bytes (raise NOTEBOOK_ACTORS_MAX_DATA if the peer is one of yours)",
                out,
            )
        control = bytes(view[table_end : table_end + size])
        self._fill = self._allocate(control, size, entries, out)
        used = table_end + size - pos
        used += self._fill.take(view[pos + used :])
        if self._fill.done:
            self._finish_fill(out)
        return used

    def _allocate(self, control: bytes, size: int, entries: list[tuple[int, int, int]], out: list[Any]) -> _Filling:
        bufs: list[Any] = []
        views: list[memoryview] = []
        for nbytes, kind, seg in entries:
            if kind == INLINE:
                buf = bytearray(nbytes)
                bufs.append(buf)
                views.append(memoryview(buf))
            elif kind == SHARED and self._take_fd is not None:
                fd = self._take_fd()
                if fd is None:
                    raise self._error(f"data frame from {self.peer} announces shared memory it did not send", out)
                try:
                    bufs.append(_shm.map_received(fd, nbytes, seg, self._on_release))
                except (OSError, ValueError) as exc:
                    raise self._error(f"data frame from {self.peer} sent unusable shared memory: {exc}", out) from None
            else:
                raise self._error(f"data frame from {self.peer} announces a buffer of unknown kind {kind}", out)
        return _Filling(control, size, bufs, views)

    def _finish_fill(self, out: list[Any]) -> None:
        fill, self._fill = self._fill, None
        assert fill is not None
        out.append(self._decode(fill.control, fill.size, out, fill.bufs))

    def _decode(self, body: Any, size: int, out: list[Any], bufs: list[Any] | None = None) -> Any:
        try:
            if bufs is not None:
                return _payload.decode_message(self._decoder, body, bufs)
            return self._decoder.decode(body)
        except msgspec.ValidationError as exc:
            if not self._skip_invalid:
                raise self._error(f"invalid message of {size} bytes from {self.peer}: {exc}", out) from None
            tag, cid = _read_envelope(body)
            return InvalidFrame(size, str(exc), tag, cid)
        except msgspec.DecodeError as exc:
            raise self._error(f"undecodable frame of {size} bytes from {self.peer}: {exc}", out) from None
        except RecursionError:
            raise self._error(f"frame of {size} bytes from {self.peer} is nested too deeply to decode", out) from None
        except MemoryError:
            raise self._error(
                f"frame of {size} bytes from {self.peer} decodes to more than fits in memory", out
            ) from None
        except Exception as exc:  # msgspec lets some errors through, e.g. UnicodeDecodeError for a bad tag
            raise self._error(
                f"undecodable frame of {size} bytes from {self.peer}: {type(exc).__name__}: {exc}", out
            ) from None

    def _error(self, text: str, decoded: list[Any]) -> FrameError:
        self.close()
        exc = FrameError(text)
        exc.decoded = decoded  # type: ignore[attr-defined]
        return exc


__all__ = [
    "HEADER",
    "INLINE",
    "MAX_DATA",
    "MAX_FRAME",
    "SHARED",
    "FrameDecoder",
    "InvalidFrame",
    "append_frame",
    "append_inline",
    "encode_frame",
    "make_data_frame",
]
