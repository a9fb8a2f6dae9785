"""Functions the benchmarks run inside other processes (importable by name)."""

from __future__ import annotations

import os


def trivial(x: int = 0) -> int:
    return x + 1


def getpid() -> int:
    return os.getpid()


def mp_result(conn, x: int = 0) -> None:
    """multiprocessing: the spawn figures' child; sends one result and exits."""
    conn.send(trivial(x))
    conn.close()


def mp_serve(conn) -> None:
    """multiprocessing: answer each message (echo/RPC), or stream ``n`` ints on
    ``("stream", n)``; stop at ``None``."""
    while True:
        msg = conn.recv()
        if msg is None:
            return
        if type(msg) is tuple and msg[0] == "stream":
            send = conn.send
            for i in range(msg[1]):
                send(i)
        else:
            conn.send(msg)


async def atrivial(x: int = 0) -> int:
    """The same, for runtimes that only run async functions (tractor)."""
    return x + 1


async def agetpid() -> int:
    return os.getpid()
