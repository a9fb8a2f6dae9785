"""The registry: which actor (by uid) listens where. Every actor has one; the actor
that hosts the tree's registry (``Actor.is_arbiter``) fills it from the others'
``register_actor`` calls, and answers ``find_actor``/``wait_for_actor`` from it.
"""

from __future__ import annotations

from typing import Any

import trio

from . import _transport

Uid = tuple[str, str]


class Registry:
    """uid → address, with a wait for a name to appear. Addresses are kept in the
    public form (``(host, port)`` for TCP, ``'uds:/path'``), which every answer gives."""

    def __init__(self) -> None:
        self._entries: dict[Uid, Any] = {}
        self._changed = trio.lowlevel.ParkingLot()

    def __contains__(self, uid: object) -> bool:
        return uid in self._entries

    def register(self, uid: list[str] | Uid, addr: Any) -> None:
        self._entries[(uid[0], uid[1])] = _transport.public_addr(addr)
        self._changed.unpark_all()

    def unregister(self, uid: list[str] | Uid) -> None:
        self._entries.pop((uid[0], uid[1]), None)
        self._changed.unpark_all()

    def by_key(self) -> dict[str, Any]:
        """``{'name.uuid': addr}`` for every entry (tractor's ``get_registry`` shape)."""
        return {f"{name}.{uuid}": addr for (name, uuid), addr in self._entries.items()}

    def find_all(self, name: str) -> list[list[Any]]:
        """``[[uid, addr], ...]`` of every actor called ``name``, oldest first."""
        return [[list(uid), addr] for uid, addr in self._entries.items() if uid[0] == name]

    def find(self, name: str) -> Any:
        """The address of the newest actor called ``name``, or None."""
        found = self.find_all(name)
        return found[-1][1] if found else None

    async def wait_for(self, name: str) -> list[Any]:
        """The addresses of the actors called ``name``, once there is one."""
        while True:
            found = self.find_all(name)
            if found:
                return [addr for _, addr in found]
            await self._changed.park()

    async def wait_changed(self) -> None:
        """Return at the next registration or deregistration."""
        await self._changed.park()
