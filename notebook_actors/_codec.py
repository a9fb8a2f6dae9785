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
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import msgspec

from ._exceptions import FrameError
from .msg import encoder

HEADER = 4
#: Largest frame a channel accepts (bytes); larger ones close the channel.
MAX_FRAME = int(os.environ.get("NOTEBOOK_ACTORS_MAX_FRAME", 64 * 1024 * 1024))


def append_frame(out: bytearray, msg: Any, head: bytes = b"") -> None:
    """Encode ``msg`` as one frame at the end of ``out``; ``head``, if given, is
    already encoded msgpack that goes first in the frame (a message's fixed prefix).

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
        raise
    size = len(out) - start - HEADER
    if size > MAX_FRAME:
        del out[start:]
        raise ValueError(f"message of {size} bytes exceeds the frame limit of {MAX_FRAME} bytes")
    out[start : start + HEADER] = size.to_bytes(HEADER, "big")


def encode_frame(msg: Any) -> bytes:
    out = bytearray()
    append_frame(out, msg)
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


class FrameDecoder:
    """Turns a byte stream into messages, frame by frame.

    ``feed`` returns every complete message; a partial frame waits for more bytes.

    Raises (from ``feed``):
        FrameError: a header over ``max_frame``, or a body that is not msgpack (or,
            without ``skip_invalid``, not a valid message), naming the peer, the size
            and the limit. The stream is unusable after it: close the channel. Messages
            decoded from the same chunk before the bad frame are in ``exc.decoded``.
    """

    def __init__(
        self,
        decoder: msgspec.msgpack.Decoder,
        *,
        max_frame: int = MAX_FRAME,
        peer: str = "peer",
        skip_invalid: bool = False,
    ) -> None:
        self._decoder = decoder
        self._max = max_frame
        self._chunks: list[bytes] = []
        self._pending = 0  # bytes held in _chunks
        self._need = HEADER  # bytes needed before parsing can make progress
        self._skip_invalid = skip_invalid
        self.peer = peer

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held back."""
        return self._pending

    def feed(self, data: bytes) -> list[Any]:
        if self._chunks:
            self._chunks.append(data)
            self._pending += len(data)
            if self._pending < self._need:
                return []
            buf = b"".join(self._chunks)
            self._chunks.clear()
        else:
            buf = bytes(data)
        self._pending, self._need = 0, HEADER
        out: list[Any] = []
        view = memoryview(buf)
        pos, end = 0, len(buf)
        while end - pos >= HEADER:
            size = int.from_bytes(view[pos : pos + HEADER], "big")
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

    def _decode(self, body: memoryview, size: int, out: list[Any]) -> Any:
        try:
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
        self._chunks.clear()
        self._pending = 0
        exc = FrameError(text)
        exc.decoded = decoded  # type: ignore[attr-defined]
        return exc


__all__ = ["HEADER", "MAX_FRAME", "FrameDecoder", "InvalidFrame", "append_frame", "encode_frame"]
