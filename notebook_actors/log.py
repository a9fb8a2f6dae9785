"""Logging through the stdlib: every logger lives under ``notebook_actors``.

Quiet by default (warnings and errors only reach stderr through Python's last-resort
handler); ``get_console_log(level)`` or ``loglevel=`` on an actor turns on more.

Besides the stdlib's levels there are tractor's, in any case (``'runtime'``,
``'RUNTIME'``, ...): ``transport`` (5, below ``debug``), ``runtime`` (15), ``cancel``
(16), ``pdb`` (500) and ``devx`` (600). The loggers :func:`get_logger` returns have a
method per level (``log.runtime("...")``); :func:`add_log_level` adds more.
"""

from __future__ import annotations

import logging
import os
from typing import Any

ROOT = "notebook_actors"
_FORMAT = "%(asctime)s %(levelname)s [%(actor)s] %(name)s: %(message)s"

#: tractor's custom levels (name -> number); the stdlib's come on top.
CUSTOM_LEVELS: dict[str, int] = {}


class ActorLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger of the ``notebook_actors`` hierarchy with a method per custom level.

    ``log.runtime(msg)``, ``log.cancel(msg)``, ``log.transport(msg)``, ``log.pdb(msg)``
    and ``log.devx(msg)`` log at that level, like ``log.info(msg)``; levels added with
    :func:`add_log_level` get a method of their own name too. ``.logger`` is the
    stdlib logger underneath (for handlers).
    """

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(logger, {})

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return msg, kwargs  # no extra fields: the actor's name comes from the handler's filter

    def __getattr__(self, name: str) -> Any:
        level = CUSTOM_LEVELS.get(name.upper())
        if level is None or name != name.lower():
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

        def log_at_level(msg: Any, *args: Any, **kwargs: Any) -> None:
            # stacklevel 2: the record names the caller's line, not this helper's
            kwargs.setdefault("stacklevel", 2)
            self.log(level, msg, *args, **kwargs)

        log_at_level.__name__ = name
        return log_at_level


def add_log_level(name: str, level: int) -> None:
    """Add a log level: ``name`` (any case) works in ``loglevel=``, in
    :func:`get_console_log` and as a logger method (``log.<name>(msg)``).

    Args:
        name: the level's name, e.g. ``'trace'``.
        level: its number (the stdlib's ``DEBUG`` is 10, ``INFO`` 20).

    Raises:
        ValueError: the name is taken by a stdlib level, or is not an identifier.
    """
    upper = name.upper()
    if not name.isidentifier():
        raise ValueError(f"a log level's name must be an identifier (it becomes a method), not {name!r}")
    stdlib = logging.getLevelNamesMapping()
    if upper in stdlib and upper not in CUSTOM_LEVELS:
        raise ValueError(f"{upper} is one of the stdlib's levels ({stdlib[upper]}); pick another name")
    CUSTOM_LEVELS[upper] = int(level)
    logging.addLevelName(int(level), upper)


for _name, _number in {"transport": 5, "runtime": 15, "cancel": 16, "pdb": 500, "devx": 600}.items():
    add_log_level(_name, _number)


def level_number(level: str | int) -> int:
    """The number of a level given by name (any case, stdlib or custom) or number.

    Raises:
        ValueError: an unknown name; the message lists the known ones.
    """
    if isinstance(level, int):
        return level
    known = logging.getLevelNamesMapping()
    try:
        return known[str(level).upper()]
    except KeyError:
        names = ", ".join(sorted(n.lower() for n in known if n not in ("WARN", "FATAL", "NOTSET")))
        raise ValueError(f"unknown log level {level!r}; known levels (any case): {names}") from None


class _ActorFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        from ._state import current_actor_or_none

        actor = current_actor_or_none()
        record.actor = f"{actor.name}:{os.getpid()}" if actor else f"-:{os.getpid()}"
        return True


def get_logger(name: str | None = None) -> ActorLogger:
    """A logger under the ``notebook_actors`` hierarchy (with the custom level methods)."""
    if not name or name == ROOT:
        return ActorLogger(logging.getLogger(ROOT))
    return ActorLogger(logging.getLogger(name if name.startswith(ROOT + ".") else f"{ROOT}.{name}"))


def get_console_log(level: str | int = "info", name: str | None = None) -> ActorLogger:
    """Show this package's logs at ``level`` (a name in any case, or a number) and above
    on stderr; return the logger ``name``.

    Raises:
        ValueError: ``level`` is no known level's name.
    """
    number = level_number(level)
    logger = get_logger(name)
    root = logging.getLogger(ROOT)
    root.setLevel(number)
    if not any(getattr(h, "_notebook_actors", False) for h in root.handlers):
        handler = logging.StreamHandler()
        handler._notebook_actors = True  # type: ignore[attr-defined]
        handler.addFilter(_ActorFilter())
        handler.setFormatter(logging.Formatter(_FORMAT, "%H:%M:%S"))
        root.addHandler(handler)
    return logger


__all__ = ["CUSTOM_LEVELS", "ActorLogger", "add_log_level", "get_console_log", "get_logger", "level_number"]
