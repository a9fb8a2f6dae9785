"""The floor's child: a bare trio program speaking msgspec length-prefixed frames over
a Unix socket, with nothing of any actor runtime in between.

``python -m bench._floor_child MODE SOCKET_PATH N``; MODE is ``echo`` (answer each
frame), ``oneway`` (one send per message), ``batched`` (many frames per send) or
``idle`` (say ready, then wait).
"""

from __future__ import annotations

import sys

import msgspec
import trio

BATCH = 1024


def frame(encoder: msgspec.msgpack.Encoder, out: bytearray, value: object) -> None:
    start = len(out)
    out += b"\0\0\0\0"
    encoder.encode_into(value, out, start + 4)
    out[start : start + 4] = (len(out) - start - 4).to_bytes(4, "big")


class Frames:
    """Read length-prefixed msgpack frames from a stream."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = b""
        self.decode = msgspec.msgpack.Decoder().decode

    async def next_batch(self) -> list:
        while True:
            out, buf, pos = [], self.buf, 0
            while len(buf) - pos >= 4:
                size = int.from_bytes(buf[pos : pos + 4], "big")
                if len(buf) - pos - 4 < size:
                    break
                out.append(self.decode(buf[pos + 4 : pos + 4 + size]))
                pos += 4 + size
            self.buf = buf[pos:]
            if out:
                return out
            data = await self.stream.receive_some(256 * 1024)
            if not data:
                raise EOFError
            self.buf += data


async def main(mode: str, path: str, n: int) -> None:
    stream = await trio.open_unix_socket(path)
    enc = msgspec.msgpack.Encoder()
    frames = Frames(stream)
    if mode == "echo":
        try:
            while True:
                for msg in await frames.next_batch():
                    out = bytearray()
                    frame(enc, out, [msg[0], msg[1] * 2])
                    await stream.send_all(out)
        except EOFError:
            return
    await frames.next_batch()  # "go"
    if mode == "oneway":
        for i in range(n):
            out = bytearray()
            frame(enc, out, i)
            await stream.send_all(out)
    elif mode == "batched":
        out = bytearray()
        for i in range(n):
            frame(enc, out, i)
            if (i + 1) % BATCH == 0:
                await stream.send_all(out)
                out = bytearray()
        if out:
            await stream.send_all(out)
    elif mode == "idle":
        await trio.sleep_forever()
    try:
        await frames.next_batch()  # wait for the parent to hang up
    except EOFError:
        pass


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]))
