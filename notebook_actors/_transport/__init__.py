"""Transports, chosen by address: ``"uds:/path/to.sock"`` or ``"tcp:host:port"``.

Backends are imported by name on first use. Inside the runtime an address is always
such a string; at the public edge (``Actor.accept_addr``, the registry's answers,
``Channel.raddr``) a TCP address is tractor's ``(host, port)`` tuple instead
(:func:`public_addr`), and whatever a user passes in is read with :func:`normalize_addr`. A transport that crosses hosts (``encrypts``)
gets TLS keyed by the tree's secret when :func:`connect`/:func:`listen` are given it;
a new transport (e.g. over SSH) sets ``encrypts`` to False if it is already private.
"""

from __future__ import annotations

import importlib
from typing import Any

import trio

from ._base import Transport
from ._rundir import runtime_dir as runtime_dir

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
    """Accept ``(host, port)`` (or the ``[host, port]`` list a tuple becomes on the
    wire), ``'host:port'``, a socket path or a full address; return the full address."""
    if isinstance(addr, (tuple, list)) and len(addr) == 2:
        host = str(addr[0])
        return f"tcp:[{host}]:{int(addr[1])}" if ":" in host else f"tcp:{host}:{int(addr[1])}"
    if isinstance(addr, str):
        if addr.startswith(("uds:", "tcp:")):
            return addr
        if addr.startswith("/"):
            return f"uds:{addr}"
        if ":" in addr:
            return f"tcp:{addr}"
    raise ValueError(f"cannot read {addr!r} as an actor address: use (host, port) or a socket path")


def public_addr(addr: Any) -> Any:
    """An address in the form tractor's users see: ``(host, port)`` for TCP, the
    ``'uds:/path'`` string for a Unix socket (tractor 0.1 has no Unix sockets), None
    for None. Takes an internal address or anything :func:`normalize_addr` reads, so
    an answer that crossed the wire (a tuple arrives as a list) comes back a tuple.

    Raises:
        ValueError: ``addr`` is not an address.
    """
    if addr is None:
        return None
    full = normalize_addr(addr)
    if full.startswith("tcp:"):
        from ._tcp import split_hostport

        return split_hostport(full[len("tcp:") :])
    return full


def is_loopback_tcp(addr: str) -> bool:
    """True for a TCP address on this host's loopback interface (127.0.0.0/8, ::1 or
    ``localhost``): where an actor whose registry is there listens too."""
    if not addr.startswith("tcp:"):
        return False
    import ipaddress

    from ._tcp import split_hostport

    host, _ = split_hostport(addr[len("tcp:") :])
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def loopback_bind_addr(registry: str) -> str:
    """A loopback TCP address (any free port) on the loopback host of ``registry``."""
    from ._tcp import split_hostport

    host, _ = split_hostport(registry[len("tcp:") :])
    if host == "localhost":
        host = "127.0.0.1"
    return f"tcp:[{host}]:0" if ":" in host else f"tcp:{host}:0"


async def spellings(addr: str) -> set[str]:
    """Every form in which a dialer may name ``addr`` in its handshake: the address
    itself and, for a TCP host name, each ``tcp:ip:port`` it resolves to (a dialer
    names the far end of its socket, an IP address).

    Raises:
        OSError: the host name does not resolve.
    """
    names = {addr}
    scheme, _, location = addr.partition(":")
    if scheme == "tcp":
        from ._tcp import split_hostport

        host, port = split_hostport(location)
        for *_, sockaddr in await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_STREAM):
            ip = str(sockaddr[0])
            names.add(f"tcp:[{ip}]:{port}" if ":" in ip else f"tcp:{ip}:{port}")
    return names


def dial_address(addr: str) -> str:
    """Where dialling ``addr`` really goes from this process (itself unless routed).

    For code that opens its own Unix socket to an address of the tree (the notebook's
    cell output), so that it takes the same route as a channel would.
    """
    return _routes.get(addr, addr)


def current_routes() -> dict[str, str]:
    """This process's routes, which actors it starts on the same machine inherit."""
    return dict(_routes)


def is_routed(addr: str) -> bool:
    """True when dialling ``addr`` goes another way (see :func:`set_routes`)."""
    return addr in _routes


async def connect(addr: str, *, secret: bytes | None = None) -> trio.abc.Stream:
    """A byte stream to ``addr`` (through its route, if it has one); encrypted under
    ``secret`` where the transport needs it (TCP: TLS keyed by the secret, see ``_tls``).

    Raises:
        OSError: nothing listens at ``addr``.
    """
    transport, location = get_transport(_routes.get(addr, addr))
    stream = await transport.connect(location)
    if secret is not None and transport.encrypts:
        from ._tls import wrap_client

        return wrap_client(stream, secret)
    return stream


async def listen(addr: str, *, secret: bytes | None = None) -> tuple[list[trio.abc.Listener[trio.abc.Stream]], str]:
    """Listen on ``addr``; return the listeners and the bound address. With ``secret``,
    an encrypting transport's listeners hand out TLS streams (the TLS handshake runs on
    first use, inside the actor handshake's deadline).

    Raises:
        OSError: the address cannot be bound.
    """
    transport, location = get_transport(addr)
    listeners, bound = await transport.listen(location)
    if secret is not None and transport.encrypts:
        from ._tls import wrap_listener

        listeners = [wrap_listener(listener, secret) for listener in listeners]
    return listeners, f"{transport.scheme}:{bound}"


def cleanup(addr: str) -> None:
    transport, location = get_transport(addr)
    transport.cleanup(location)
