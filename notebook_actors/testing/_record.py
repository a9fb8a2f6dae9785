"""What an actor saw, kept in that actor and read back by the test that spawned it.

An actor-side function calls ``record(key, value)``; the test reads it back with
``await portal.run(wait_recorded, key=key)``, which waits for the record instead of
sleeping. The records live in the actor's own process, one store per process.

The trap: ``portal.run(wait_recorded, ...)`` runs a function of *this* module in the
actor, so the actor must have it enabled:
``start_actor(name, enable_modules=[__name__, RECORDER])``. Calling ``record()`` from
your own module's function needs nothing extra.
"""

from __future__ import annotations

import trio

#: the module name to pass in ``enable_modules`` to read records back with portal.run
RECORDER = __name__

__all__ = ["RECORDER", "record", "recorded", "wait_recorded"]

_RECORDS: dict[str, object] = {}
_EVENTS: dict[str, trio.Event] = {}


def _event(key: str) -> trio.Event:
    return _EVENTS.setdefault(key, trio.Event())


def record(key: str, value: object) -> None:
    """Keep ``value`` under ``key`` in this process, waking whoever waits for it."""
    _RECORDS[key] = value
    _event(key).set()


def recorded(key: str) -> object:
    """The value recorded under ``key`` in this process so far, or None."""
    return _RECORDS.get(key)


async def wait_recorded(key: str) -> object:
    """Wait until something is recorded under ``key`` in this process; return it."""
    await _event(key).wait()
    return _RECORDS[key]
