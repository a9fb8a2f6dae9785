"""How an ``%%actor`` cell ends, as the notebook shows it: one line, or the user's traceback.

Each exception here renders itself for IPython (``_render_traceback_``): no frames of
the kernel, the runtime or trio, only what the user needs.
"""

from __future__ import annotations

from typing import Any

from ._protocol import CellFailed, decode_value


class CellError(Exception):
    """Raised in the kernel when an ``%%actor`` cell fails in its actor.

    IPython shows the remote traceback, trimmed to the user's frames and numbered like
    the editor's lines. ``.ename``/``.evalue`` are the remote exception's type name and
    message; the class name shown is the remote type's (see :func:`cell_error`).
    """

    def __init__(self, path: str, failed: CellFailed) -> None:
        self.path = path
        self.ename = failed.ename
        self.evalue = failed.evalue
        self.remote_traceback = list(failed.traceback)
        self.pid = failed.pid
        super().__init__(f"{self.ename} in actor {path!r}: {self.evalue}")

    def _render_traceback_(self) -> list[str]:
        head = f"{self.ename} in actor {self.path!r} (pid {self.pid}); the actor is still alive:"
        return [head, *"".join(self.remote_traceback).rstrip("\n").splitlines()]


def cell_error(path: str, failed: CellFailed) -> CellError:
    """A CellError whose class name is the remote exception's (e.g. ``ZeroDivisionError``)."""
    name = failed.ename if failed.ename.isidentifier() else "CellError"
    cls = type(name, (CellError,), {"__module__": "notebook_actors.actor"})
    return cls(path, failed)


class _OneLine:
    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


class CellInterrupted(_OneLine, KeyboardInterrupt):
    """Raised in the kernel when an ``%%actor`` cell was interrupted (shown as KeyboardInterrupt)."""


class CellTimeout(_OneLine, TimeoutError):
    """Raised in the kernel when an ``%%actor --timeout S`` cell ran too long."""


class ActorGone(_OneLine, RuntimeError):
    """Raised in the kernel when the actor running a cell died, was killed or was
    stopped before the cell ended (one line: who, how)."""

    def _render_traceback_(self) -> list[str]:
        return [str(self)]


class CellsFailed(Exception):
    """Raised when a cell run in several actors failed in some of them; each failure
    was shown, labelled, above; this is the summary line."""

    def _render_traceback_(self) -> list[str]:
        return [str(self)]


CellInterrupted.__name__ = CellInterrupted.__qualname__ = "KeyboardInterrupt"
CellTimeout.__name__ = CellTimeout.__qualname__ = "TimeoutError"


class CellResult:
    """The value of an ``%%actor`` cell's last expression, as the actor rendered it.

    ``value`` is the value itself when it could travel (builtins), else None.
    """

    def __init__(self, path: str, data: dict[str, Any], metadata: dict[str, Any], value: bytes | None) -> None:
        self.path = path
        self.data = data
        self.metadata = metadata
        self.has_value = value is not None
        self.value = decode_value(value) if value is not None else None

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
        return self.data, self.metadata

    def __repr__(self) -> str:
        return str(self.data.get("text/plain", f"<value from actor {self.path!r}>"))
