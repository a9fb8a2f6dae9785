"""Logging through the stdlib: every logger lives under ``notebook_actors``.

Quiet by default (warnings and errors only reach stderr through Python's last-resort
handler); ``get_console_log(level)`` or ``loglevel=`` on an actor turns on more.
"""

from __future__ import annotations

import logging
import os

ROOT = "notebook_actors"
_FORMAT = "%(asctime)s %(levelname)s [%(actor)s] %(name)s: %(message)s"


class _ActorFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        from ._state import current_actor_or_none

        actor = current_actor_or_none()
        record.actor = f"{actor.name}:{os.getpid()}" if actor else f"-:{os.getpid()}"
        return True


def get_logger(name: str | None = None) -> logging.Logger:
    """A logger under the ``notebook_actors`` hierarchy."""
    if not name or name == ROOT:
        return logging.getLogger(ROOT)
    return logging.getLogger(name if name.startswith(ROOT + ".") else f"{ROOT}.{name}")


def get_console_log(level: str | int = "info", name: str | None = None) -> logging.Logger:
    """Show this package's logs at ``level`` and above on stderr; return the logger."""
    logger = get_logger(name)
    root = logging.getLogger(ROOT)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    if not any(getattr(h, "_notebook_actors", False) for h in root.handlers):
        handler = logging.StreamHandler()
        handler._notebook_actors = True  # type: ignore[attr-defined]
        handler.addFilter(_ActorFilter())
        handler.setFormatter(logging.Formatter(_FORMAT, "%H:%M:%S"))
        root.addHandler(handler)
    return logger


__all__ = ["get_console_log", "get_logger"]
