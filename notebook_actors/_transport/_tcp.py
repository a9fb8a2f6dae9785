"""TCP: for actors on other hosts (encrypted with TLS by the transport layer, ``_tls``)."""

from __future__ import annotations

import socket

import trio

from ._base import Transport


def split_hostport(location: str) -> tuple[str, int]:
    host, _, port = location.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


class TCPTransport(Transport):
    scheme = "tcp"
    encrypts = True

    async def connect(self, location: str) -> trio.abc.Stream:
        host, port = split_hostport(location)
        stream = await trio.open_tcp_stream(host, port)
        stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        return stream

    async def listen(self, location: str) -> tuple[list[trio.abc.Listener[trio.abc.Stream]], str]:
        host, port = split_hostport(location)
        listeners = await trio.open_tcp_listeners(port, host=host)
        bound = listeners[0].socket.getsockname()
        # an IPv6 host in brackets, as the handshake names the far end of a socket
        return [*listeners], f"[{host}]:{bound[1]}" if ":" in host else f"{host}:{bound[1]}"


backend_class = TCPTransport
