"""Length-prefixed msgpack frames: the byte layer under every channel.

A frame is a 4-byte big-endian length followed by that many bytes of msgpack. Frames
are appended to one output buffer, so a backlog leaves in a single write (batching
without a batch message, and without delaying a lone message).
"""
from __future__ import annotations

import os
from typing import Any

import msgspec

from ._exceptions import FrameError
from .msg import encoder

HEADER = 4
#: Largest frame a channel accepts (bytes); larger ones close the channel.
MAX_FRAME = int(os.environ.get("NOTEBOOK_ACTORS_MAX_FRAME", 64 * 1024 * 1024))


def append_frame(out: bytearray, msg: Any) -> None:
    """Encode ``msg`` as one frame at the end of ``out``."""
    start = len(out)
    out += b"\0\0\0\0"
    encoder.encode_into(msg, out, start + HEADER)
    size = len(out) - start - HEADER
    if size > MAX_FRAME:
        del out[start:]
        raise ValueError(f"message of {size} bytes exceeds the frame limit of {MAX_FRAME} bytes")
    out[start : start + HEADER] = size.to_bytes(HEADER, "big")


def encode_frame(msg: Any) -> bytes:
    out = bytearray()
    append_frame(out, msg)
    return bytes(out)


class FrameDecoder:
    """Turns a byte stream into messages, frame by frame.

    ``feed`` returns every complete message; a partial frame waits for more bytes. A
    header over ``max_frame`` or bytes that do not decode raise :class:`FrameError`
    naming the peer, the size and the limit; the caller closes the channel.
    """

    def __init__(self, decoder: msgspec.msgpack.Decoder, *, max_frame: int = MAX_FRAME, peer: str = "peer") -> None:
        self._decoder = decoder
        self._max = max_frame
        self._rest = b""
        self.peer = peer

    @property
    def buffered(self) -> int:
        return len(self._rest)

    def feed(self, data: bytes) -> list[Any]:
        buf = self._rest + data if self._rest else data
        view = memoryview(buf)
        out = []
        pos, end = 0, len(buf)
        decode = self._decoder.decode
        while end - pos >= HEADER:
            size = int.from_bytes(view[pos : pos + HEADER], "big")
            if size > self._max:
                raise FrameError(
                    f"frame from {self.peer} announces {size} bytes, over the limit of {self._max} bytes"
                )
            if end - pos - HEADER < size:
                break
            body = view[pos + HEADER : pos + HEADER + size]
            try:
                out.append(decode(body))
            except msgspec.DecodeError as exc:  # ValidationError is a subclass
                raise FrameError(f"undecodable frame of {size} bytes from {self.peer}: {exc}") from None
            pos += HEADER + size
        self._rest = bytes(view[pos:]) if pos < end else b""
        return out
