"""Transports, chosen by address: ``"uds:/path/to.sock"`` or ``"tcp:host:port"``.

Backends are imported by name on first use; user-facing ``(host, port)`` tuples are
normalised with :func:`normalize_addr`.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._base import Transport

_backends: dict[str, Transport] = {}

#: addresses this process reaches another way: an actor on another machine dials its
#: parent's ``uds:`` address through the socket its launcher forwarded (``ssh -R``)
_routes: dict[str, str] = {}


def set_routes(routes: dict[str, str]) -> None:
    """Dial ``routes[addr]`` whenever ``addr`` is dialled (set once at a child's boot).

    The address stays the name of the peer everywhere else (handshakes, the tree,
    the registry); only the dial goes the other way.
    """
    _routes.update(routes)


def get_transport(addr: str) -> tuple[Transport, str]:
    """The transport serving ``addr`` and the address' location part."""
    scheme, sep, location = addr.partition(":")
    if not sep or scheme not in ("uds", "tcp"):
        raise ValueError(f"unknown address {addr!r}: expected 'uds:/path' or 'tcp:host:port'")
    if scheme not in _backends:
        _backends[scheme] = importlib.import_module(f"._{scheme}", __name__).backend_class()
    return _backends[scheme], location


def normalize_addr(addr: Any) -> str:
    """Accept ``(host, port)``, ``'host:port'``, a socket path or a full address."""
    if isinstance(addr, (tuple, list)) and len(addr) == 2:
        return f"tcp:{addr[0]}:{int(addr[1])}"
    if isinstance(addr, str):
        if addr.startswith(("uds:", "tcp:")):
            return addr
        if addr.startswith("/"):
            return f"uds:{addr}"
        if ":" in addr:
            return f"tcp:{addr}"
    raise ValueError(f"cannot read {addr!r} as an actor address: use (host, port) or a socket path")


async def connect(addr: str):
    transport, location = get_transport(_routes.get(addr, addr))
    return await transport.connect(location)


async def listen(addr: str):
    transport, location = get_transport(addr)
    listeners, bound = await transport.listen(location)
    return listeners, f"{transport.scheme}:{bound}"


def cleanup(addr: str) -> None:
    transport, location = get_transport(addr)
    transport.cleanup(location)
