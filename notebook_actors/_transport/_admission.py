"""Admission of unauthenticated connections: budgets a flood cannot exhaust for others.

Each listener has its own :class:`HandshakeGate`, so a flood on a TCP address never
touches the Unix socket children connect back to. Within one gate:

- at most ``budget`` connections are mid-handshake at once, and at most
  ``per_source`` of them from one source (a user id for local peers, an IP address
  for remote ones);
- a newcomer is never turned away: when its source is at its limit, that source's
  oldest pending connection is dropped; when the gate is full, the oldest pending
  connection of the source holding the most slots is. Idle connections therefore
  cost their owner its own slots, while a real peer (whose handshake takes
  milliseconds) always gets in;
- drops are logged at most once per ``interval`` in full, then as one summary line
  per interval (``DropLog``), never a line per connection.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import struct
import time
from collections import Counter, OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import trio

log = logging.getLogger("notebook_actors.transport")

#: Connections one listener lets be mid-handshake at once.
BUDGET = 64
#: Of those, how many one source (user or remote address) may hold.
PER_SOURCE = 8
#: Seconds between two log lines about dropped connections.
LOG_INTERVAL = 10.0


def _socket_of(stream: Any) -> Any:
    while not hasattr(stream, "socket") and hasattr(stream, "transport_stream"):
        stream = stream.transport_stream
    return getattr(stream, "socket", None)


def peer_source(stream: Any) -> str:
    """Who a connection comes from, for the per-source limit: ``"uid 1000"`` for a
    local peer (SO_PEERCRED for Unix sockets, the socket table for loopback TCP),
    ``"ip 10.0.0.7"`` for a remote one."""
    sock = _socket_of(stream)
    if sock is None:
        return "in-process"
    try:
        if sock.family == socket.AF_UNIX:
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            return f"uid {struct.unpack('3i', creds)[1]}"
        local, remote = sock.getsockname()[:2], sock.getpeername()[:2]
    except OSError:
        return "unknown"
    uid = _local_tcp_uid(remote, local) if _same_host(remote[0], local[0]) else None
    return f"uid {uid}" if uid is not None else f"ip {remote[0]}"


def _same_host(remote_ip: str, local_ip: str) -> bool:
    try:
        return ipaddress.ip_address(remote_ip).is_loopback or remote_ip == local_ip
    except ValueError:
        return False


#: sock_diag (netlink) constants from linux/sock_diag.h and linux/inet_diag.h
_NETLINK_SOCK_DIAG, _SOCK_DIAG_BY_FAMILY, _NLMSG_ERROR = 4, 20, 2
_TCP_LISTEN = 10
_NO_COOKIE = 0xFFFFFFFF
#: inet_diag_msg after the netlink header: family, state, timer, retrans, the socket
#: id (ports, addresses, interface, cookie), expires, queues, uid, inode
_DIAG_MSG = struct.Struct("=BBBB2s2s16s16sIIIIIIII")


def _local_tcp_uid(remote: tuple[str, int], local: tuple[str, int]) -> int | None:
    """The user owning the local socket at ``remote`` connected to ``local`` (Linux).

    Asks the kernel for that one socket (sock_diag, an exact lookup: a flood of
    connections makes each lookup no slower); the socket table in ``/proc`` is the
    fallback where sock_diag is missing. None when no process holds that socket any
    more: a peer that already hung up leaves an orphaned or TIME_WAIT entry (inode
    0), which the kernel shows as owned by uid 0, so a flood of such connections
    would be blamed on root.
    """
    try:
        return _sock_diag_uid(remote, local)
    except OSError:
        return _proc_tcp_uid(remote, local)


def _as_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    ip = ipaddress.ip_address(host)
    return ip.ipv4_mapped or ip if isinstance(ip, ipaddress.IPv6Address) else ip


def _sock_diag_uid(remote: tuple[str, int], local: tuple[str, int]) -> int | None:
    """:func:`_local_tcp_uid` through one sock_diag request (raises OSError if unsupported)."""
    src, dst = _as_ip(remote[0]), _as_ip(local[0])
    family = socket.AF_INET if src.version == 4 else socket.AF_INET6
    sock_id = struct.pack(
        "=2s2s16s16sIII",
        remote[1].to_bytes(2, "big"),
        local[1].to_bytes(2, "big"),
        src.packed.ljust(16, b"\0"),
        dst.packed.ljust(16, b"\0"),
        0,
        _NO_COOKIE,
        _NO_COOKIE,
    )
    request = struct.pack("=BBBxI", family, socket.IPPROTO_TCP, 0, 0xFFFFFFFF) + sock_id
    header = struct.pack("=IHHII", 16 + len(request), _SOCK_DIAG_BY_FAMILY, 1, 1, 0)  # NLM_F_REQUEST
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as nl:
        nl.sendall(header + request)
        reply = nl.recv(8192)
    _length, kind = struct.unpack_from("=IH", reply)
    if kind == _NLMSG_ERROR:
        code = -struct.unpack_from("=i", reply, 16)[0]
        if code == errno.ENOENT:  # no such socket (any more)
            return None
        raise OSError(code, "sock_diag lookup failed")  # e.g. no inet_diag: the caller scans /proc
    fields = _DIAG_MSG.unpack_from(reply, 16)
    state, uid, inode = fields[1], fields[-2], fields[-1]
    return uid if inode and state != _TCP_LISTEN else None


def _proc_tcp_addr(field: str) -> tuple[str, int]:
    """Decode ``0100007F:0650`` (``/proc/net/tcp``: host-order words, hex port)."""
    hexip, hexport = field.split(":")
    raw = bytes.fromhex(hexip)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words)), int(hexport, 16)


def _proc_tcp_uid(remote: tuple[str, int], local: tuple[str, int]) -> int | None:
    """:func:`_local_tcp_uid` by a scan of ``/proc/net/tcp`` (slow with many sockets)."""
    want_local = (str(ipaddress.ip_address(remote[0])), remote[1])
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if _proc_tcp_addr(fields[1]) == want_local and _proc_tcp_addr(fields[2])[1] == local[1]:
                        return int(fields[7]) if fields[9] != "0" else None
        except (OSError, ValueError, IndexError, StopIteration):
            continue
    return None


class DropLog:
    """Rate-limited reporting of dropped connections: the first drop of an interval is
    logged in full, the rest are counted and summed up in one line when the interval
    ends (or the next drop after it comes)."""

    def __init__(self, where: str, interval: float = LOG_INTERVAL) -> None:
        self.where = where
        self.interval = interval
        self._window_end = 0.0
        self._suppressed: Counter[str] = Counter()
        self.total = 0

    def drop(self, level: int, text: str, source: str) -> None:
        self.total += 1
        if level < logging.WARNING:  # a peer that merely hung up: not worth a window
            log.log(level, "%s %s", self.where, text)
            return
        now = time.monotonic()
        if now >= self._window_end:
            self.flush()
            self._window_end = now + self.interval
            log.log(level, "%s %s", self.where, text)
        else:
            self._suppressed[source] += 1

    def flush(self) -> None:
        """Log the summary of what was suppressed since the last full line."""
        if not self._suppressed:
            return
        count = sum(self._suppressed.values())
        top = ", ".join(f"{src} x{n}" for src, n in self._suppressed.most_common(3))
        more = "" if len(self._suppressed) <= 3 else f", {len(self._suppressed) - 3} other sources"
        log.warning(
            "%s dropped %d more unauthenticated connection(s) in the last %g s (%s%s)",
            self.where,
            count,
            self.interval,
            top,
            more,
        )
        self._suppressed.clear()

    async def run(self) -> None:
        """Flush a summary at the end of each interval in which something was dropped."""
        while True:
            await trio.sleep(self.interval)
            if time.monotonic() >= self._window_end:
                self.flush()


class _Slot:
    __slots__ = ("evicted", "scope", "source")

    def __init__(self, source: str) -> None:
        self.scope = trio.CancelScope()
        self.source = source
        self.evicted = False


class HandshakeGate:
    """One listener's budget of pending handshakes (see module docs)."""

    def __init__(self, drops: DropLog, *, budget: int | None = None, per_source: int | None = None) -> None:
        self.drops = drops
        self.budget = budget or BUDGET
        self.per_source = per_source or PER_SOURCE
        self._pending: OrderedDict[_Slot, None] = OrderedDict()  # oldest first
        self._per_source: Counter[str] = Counter()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _evict_for(self, source: str) -> None:
        if self._per_source[source] >= self.per_source:
            victim_source = source
        elif len(self._pending) >= self.budget:
            victim_source = self._per_source.most_common(1)[0][0]
        else:
            return
        victim = next(s for s in self._pending if s.source == victim_source)
        self._release(victim)
        victim.evicted = True
        victim.scope.cancel()
        self.drops.drop(
            logging.WARNING,
            f"dropped a pending connection from {victim_source} to make room "
            f"({self._per_source[victim_source] + 1} of its connections were still in their handshake: a flood?)",
            victim_source,
        )

    def _release(self, slot: _Slot) -> None:
        if slot in self._pending:
            del self._pending[slot]
            self._per_source[slot.source] -= 1
            if not self._per_source[slot.source]:
                del self._per_source[slot.source]

    @contextmanager
    def admit(self, source: str) -> Iterator[_Slot]:
        """Hold a slot while the body runs the handshake; the body is cancelled (and
        ``slot.evicted`` set) when a newer connection needs the slot."""
        self._evict_for(source)
        slot = _Slot(source)
        self._pending[slot] = None
        self._per_source[source] += 1
        try:
            with slot.scope:
                yield slot
        finally:
            self._release(slot)
