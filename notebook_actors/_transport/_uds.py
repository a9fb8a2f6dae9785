"""Unix domain sockets: the default between actors on one host.

Socket files live in a private per-user directory (mode 0700, see ``_rundir``), are named after the
actor and its pid, and are removed on exit; files left by killed actors are swept
the next time a socket is bound.
"""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

import trio

from ._base import Transport
from ._rundir import default_registry_addr, runtime_dir


def sweep_stale(directory: Path) -> None:
    """Remove socket files whose owning process (the pid in the name) is gone."""
    for f in directory.glob("*.sock"):
        try:
            pid = int(f.stem.rsplit("-", 2)[-2])
            os.kill(pid, 0)
        except (ValueError, IndexError):
            continue
        except ProcessLookupError:
            f.unlink(missing_ok=True)
        except PermissionError:
            pass


async def _is_stale(location: str) -> bool:
    """True when ``location`` is a socket file that refuses connections."""
    try:
        stream = await trio.open_unix_socket(location)
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    await stream.aclose()
    return False


class UDSTransport(Transport):
    scheme = "uds"

    async def connect(self, location: str) -> trio.abc.Stream:
        return await trio.open_unix_socket(location)

    async def listen(self, location: str) -> tuple[list[trio.abc.Listener[trio.abc.Stream]], str]:
        try:
            sock = await self._bind(location)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or not await _is_stale(location):
                raise
            # a socket file nobody listens on (its actor was killed): take it over
            os.unlink(location)
            sock = await self._bind(location)
        os.chmod(location, 0o600)
        sock.listen(socket.SOMAXCONN)
        return [trio.SocketListener(sock)], location

    @staticmethod
    async def _bind(location: str) -> trio.socket.SocketType:
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            await sock.bind(location)
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EADDRINUSE:
                raise
            raise OSError(errno.EADDRINUSE, f"socket file {location} is in use") from None
        return sock

    def cleanup(self, location: str) -> None:
        try:
            os.unlink(location)
        except FileNotFoundError:
            pass


def socket_path(name: str, uid_hex: str) -> str:
    safe = "".join(c if c.isalnum() or c in "_." else "_" for c in name)[:40]
    return str(runtime_dir() / f"{safe}-{os.getpid()}-{uid_hex[:8]}.sock")


backend_class = UDSTransport

__all__ = ["UDSTransport", "default_registry_addr", "runtime_dir", "socket_path", "sweep_stale"]
