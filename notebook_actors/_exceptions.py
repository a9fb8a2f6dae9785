"""Every exception the runtime raises, in one place.

Errors that cross a process boundary travel as an :class:`~notebook_actors.msg.ErrorInfo`
and are rebuilt on the other side as a :class:`RemoteActorError` (or a subclass) that
keeps the original type's name, the remote traceback text and the chain of actors the
error crossed.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

import trio

from . import _payload
from .msg import ErrorInfo

__all__ = [
    "ActorCrashed",
    "AsyncioCancelled",
    "ContextCancelled",
    "FrameError",
    "HandshakeError",
    "ModuleNotExposed",
    "MsgTypeError",
    "MultiError",
    "NoResult",
    "NoRuntime",
    "PeerLeft",
    "RemoteActorError",
    "StreamOverrun",
    "TransportClosed",
]


def _fmt_uid(uid: Any) -> str:
    if uid is None:
        return "<unknown actor>"
    return repr(tuple(uid))


_NOT_LOADED = object()


class RemoteActorError(Exception):
    """Raised when an error in another actor reaches this one.

    ``.type`` is the original exception class when it is importable here (``None``
    otherwise; ``.type_name`` always has its name). ``.tb_str`` is the remote traceback
    text, ``.src_uid`` the actor where the error was raised and ``.relay_path`` every
    actor it crossed on its way here. ``str()`` begins with the failing actor's uid.
    """

    def __init__(self, info: ErrorInfo) -> None:
        self.info = info
        self._exception: Any = _NOT_LOADED
        super().__init__(self._summary())

    def _summary(self) -> str:
        info = self.info
        where = f" on {info.src_host}" if info.src_host else ""
        head = f"{_fmt_uid(info.src_uid)}{where} raised {info.type_name}"
        if info.message:
            head += f": {info.message}"
        if len(info.relay_path) > 1:
            path = " -> ".join(_fmt_uid(u) for u in info.relay_path)
            head += f"\n(relayed {path})"
        lines = info.tb_str.rstrip().splitlines()
        if len(lines) > 1:  # not a refusal's line alone (remote_traceback)
            tb = "\n".join("  | " + line for line in lines)
            head += f"\n\n  Remote traceback:\n{tb}"
        return head

    def __reduce__(self) -> tuple[type[RemoteActorError], tuple[ErrorInfo]]:  # picklable, e.g. across processes
        return (type(self), (self.info,))

    @property
    def type_name(self) -> str:
        return self.info.type_name

    @property
    def type(self) -> type[BaseException] | None:
        """The original exception class, resolved only from modules already imported."""
        mod = sys.modules.get(self.info.type_module)
        obj: Any = mod
        for part in self.info.type_name.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            return obj
        return None

    boxed_type = type

    @property
    def tb_str(self) -> str:
        return self.info.tb_str

    @property
    def src_uid(self) -> tuple[str, str] | None:
        return tuple(self.info.src_uid) if self.info.src_uid else None  # type: ignore[return-value]

    @property
    def relay_path(self) -> list[tuple[str, str]]:
        return [tuple(u) for u in self.info.relay_path]  # type: ignore[misc]

    @property
    def exception(self) -> BaseException | None:
        """The original exception, rebuilt here with its args and attributes (an array
        it carries, say); None when it did not travel (it does not pickle, is over
        16 MiB pickled, came through a typed-only actor or context) or cannot be
        rebuilt here (its class is not importable). Unpickled on first use."""
        if self._exception is _NOT_LOADED:
            from . import _payload

            self._exception = _payload.load_exception(self.info.exc) if self.info.exc else None
        loaded: BaseException | None = self._exception
        return loaded

    @property
    def msgdata(self) -> dict[str, Any]:
        """A tractor-compatible dict view: ``tb_str``, ``src_actor_uid``, ..."""
        return {
            "tb_str": self.info.tb_str,
            "src_actor_uid": self.src_uid,
            "boxed_type_str": self.info.type_name,
            "relay_path": self.relay_path,
            "canceller": tuple(self.info.canceller) if self.info.canceller else None,
        }


class ContextCancelled(RemoteActorError):
    """Raised when the other side of a context (or the actor running it) cancelled it.

    ``.canceller`` is the uid of the actor that asked for the cancellation.
    """

    @property
    def canceller(self) -> tuple[str, str] | None:
        c = self.info.canceller
        return tuple(c) if c else None  # type: ignore[return-value]


class ActorCrashed(RemoteActorError):
    """Raised when a child actor process died without being asked to.

    ``.exitcode`` is the process' exit code (negative: killed by that signal).
    """

    @property
    def exitcode(self) -> int | None:
        return self.info.exitcode


class ModuleNotExposed(ModuleNotFoundError):
    """Raised (in the callee, then boxed to the caller) when the called function's
    module is not in the actor's ``enable_modules``."""


class StreamOverrun(trio.TooSlowError):
    """Raised on the sending side when the receiver's buffer is full and the stream
    was opened with ``backpressure=False``."""


class MsgTypeError(TypeError):
    """Raised when a payload does not match the type the receiving side declared."""


class NoResult(RuntimeError):
    """Raised when a result is asked of a portal whose actor runs no function."""


class NoRuntime(RuntimeError):
    """Raised when the runtime is used in a process where none is running."""


class TransportClosed(trio.ClosedResourceError):
    """Raised when the channel to another actor closed while something still used it."""


class FrameError(ValueError):
    """Raised when bytes from a peer do not form a valid message frame."""


class HandshakeError(ConnectionError):
    """Raised when a peer fails the connection handshake (wrong secret or protocol)."""


class PeerLeft(HandshakeError):
    """Raised when a peer hangs up before it finished the handshake (no proof of anything
    wrong: a probe, or a program that was cancelled while connecting)."""


class AsyncioCancelled(Exception):
    """Raised in trio when the asyncio task it waits on (``to_asyncio.run_task``,
    ``to_asyncio.open_channel_from``) was cancelled by asyncio, not by trio.

    A trio-side cancellation cancels the asyncio task and stays a ``trio.Cancelled``;
    this error means something on the asyncio side (``task.cancel()``, a loop shutting
    down) ended the task on its own.
    """


class MultiError(ExceptionGroup):
    """Several actors failed at once: the group of their errors."""

    def derive(self, excs: Sequence[Any]) -> Any:  # keep the class when split/subgroup'd
        return MultiError(self.message, excs)


def group_or_single(errors: list[BaseException], message: str) -> BaseException:
    """One error stays itself; several become a :class:`MultiError`."""
    if len(errors) == 1:
        return errors[0]
    if all(isinstance(e, Exception) for e in errors):
        return MultiError(message, errors)  # type: ignore[arg-type]
    return BaseExceptionGroup(message, errors)


# -- boxing: an exception for the wire, and back --------------------------------------
#: this package's directory (with a trailing separator): frames from files under it
#: are the runtime's own, not the user's (tracebacks, the debugger, stack dumps)
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def remote_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` as its caller sees it: from the first frame of user
    code (the runtime's frames that called the function are left out).

    A refusal (:class:`ModuleNotExposed`: the function's module is not enabled, no
    such method) that the runtime raised itself is just its line, as it is the
    caller's mistake; any other error raised in the runtime's frames alone keeps them
    all, as it is the runtime's.
    """
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(PACKAGE_DIR):
        tb = tb.tb_next
    if tb is None:
        if isinstance(exc, ModuleNotExposed):
            return "".join(traceback.format_exception_only(type(exc), exc))
        tb = exc.__traceback__
    return "".join(traceback.format_exception(type(exc), exc, tb))


def box_error(
    exc: BaseException, uid: Any, *, canceller: Any = None, exitcode: int | None = None, pickled: bool = True
) -> ErrorInfo:
    """Pack ``exc`` for the wire. An already boxed error keeps its origin and gains a hop.

    Args:
        pickled: the exception itself goes too, pickled (when it pickles), for
            :attr:`RemoteActorError.exception`; not from a typed-only side.
    """
    if isinstance(exc, RemoteActorError):
        info = exc.info
        # an ActorCrashed made here already names this actor as its last hop
        path = list(info.relay_path)
        if not path or list(path[-1]) != list(uid):
            path.append(uid)
        return ErrorInfo(
            info.type_name,
            info.type_module,
            info.message,
            info.tb_str,
            info.src_uid,
            path,
            info.canceller,
            info.exitcode,
            info.src_host,
            info.exc,
        )
    try:
        message = str(exc)
    except Exception as str_exc:  # an exception whose __str__ raises
        message = f"<str() of this {type(exc).__name__} raised {type(str_exc).__name__}>"
    try:
        tb = remote_traceback(exc)
    except Exception:
        tb = f"{type(exc).__name__}: {message}\n"
    etype = type(exc)
    name = "ContextCancelled" if canceller is not None else etype.__qualname__
    module = __name__ if canceller is not None else etype.__module__
    host = os.environ.get("NOTEBOOK_ACTORS_HOST")
    data = _payload.pack_exception(exc) if pickled and canceller is None and exitcode is None else None
    return ErrorInfo(name, module, message, tb, uid, [uid], canceller, exitcode, host, data)


def unbox(info: ErrorInfo) -> RemoteActorError:
    """Rebuild a boxed error as the matching RemoteActorError subclass."""
    if info.type_name == "ContextCancelled":
        return ContextCancelled(info)
    if info.exitcode is not None:
        return ActorCrashed(info)
    return RemoteActorError(info)
