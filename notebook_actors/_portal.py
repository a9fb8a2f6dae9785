"""Portals: the handle one actor uses to call into another.

Functions travel by name (``module:qualname``) and must be in an enabled module on the
far side. Code that is not importable by name there — defined in a notebook cell, in
an interactive ``__main__`` or inside another function — travels by value
(cloudpickle), which actors accept only over the tree's authenticated channels.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import FunctionType
from typing import TYPE_CHECKING, Any

import trio

from . import _transport
from ._call import CANCEL_ACK_TIMEOUT, DEFAULT_WINDOW, DEFAULT_WINDOW_BYTES, Call, encode_args
from ._context import CURRENT_CTX, Context, MsgStream, endpoint_kind, endpoint_types
from ._exceptions import ContextCancelled, NoResult, unbox
from .msg import Return, Start, Started

if TYPE_CHECKING:
    from ._channel import Channel


def func_ref(fn: Callable[..., Any]) -> tuple[str, str, bytes | None]:
    """How ``fn`` travels: ``(module, qualname, None)`` by name, or by value."""
    if isinstance(fn, str):
        raise TypeError("pass a function, or the two strings form: portal.run('pkg.mod', 'fname')")
    mod, qual = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if mod is None or qual is None:
        raise TypeError(f"{fn!r} is not a function that can run in another actor")
    main = sys.modules.get("__main__")
    by_value = (
        "<locals>" in qual
        or (mod == "__main__" and not getattr(main, "__file__", None))
        or (mod != "__main__" and mod not in sys.modules)  # e.g. an actor's notebook-cell namespace
    )
    if not by_value:
        return mod, qual, None
    try:
        import cloudpickle
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise TypeError(f"{qual} is not importable by name and cloudpickle is missing") from exc
    try:
        return mod, qual, cloudpickle.dumps(_WithSource.wrap(fn))
    except Exception as exc:
        raise TypeError(f"{qual} cannot be shipped to another actor by value: {exc}") from None


class _WithSource:
    """A function shipped by value together with its source lines.

    cloudpickle renames every code object's file to ``<dynamic-code>``, so the far
    side's tracebacks and debugger had no source for code defined in a notebook cell.
    Unpickling this restores the file names (of the function and of the functions it
    uses by global name) and registers their lines in ``linecache``.
    """

    def __init__(self, fn: Any, names: dict[str, str], files: dict[str, list[str]]) -> None:
        self.fn, self.names, self.files = fn, names, files

    @classmethod
    def wrap(cls, fn: Any) -> Any:
        import linecache

        names: dict[str, str] = {}  # global name ("" for fn itself) -> its file
        files: dict[str, list[str]] = {}
        todo: list[tuple[str, Any]] = [("", fn)]
        seen: set[int] = set()
        while todo:
            name, f = todo.pop()
            code = getattr(f, "__code__", None)
            if code is None or id(f) in seen or len(seen) > 100:
                continue
            seen.add(id(f))
            lines = files.get(code.co_filename) or linecache.getlines(code.co_filename)
            if lines:
                names[name], files[code.co_filename] = code.co_filename, lines
            glb = getattr(f, "__globals__", {})
            todo.extend((n, glb[n]) for n in _code_names(code) if inspect.isfunction(glb.get(n)))
        return cls(fn, names, files) if names else fn

    def __reduce__(self) -> Any:
        return _restore_source, (self.fn, self.names, self.files)


def _code_names(code: Any) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if inspect.iscode(const):
            names |= _code_names(const)
    return names


def _restore_source(fn: Any, names: dict[str, str], files: dict[str, list[str]]) -> Any:
    import linecache

    for filename, lines in files.items():
        linecache.cache.setdefault(filename, (sum(map(len, lines)), None, lines, filename))

    def renamed(code: Any, filename: str) -> Any:
        consts = tuple(renamed(c, filename) if inspect.iscode(c) else c for c in code.co_consts)
        return code.replace(co_filename=filename, co_consts=consts)

    glb = getattr(fn, "__globals__", {})
    for name, filename in names.items():
        f = fn if name == "" else glb.get(name)
        if f is None:
            continue
        try:
            if f.__code__.co_filename == "<dynamic-code>":
                f.__code__ = renamed(f.__code__, filename)
        except (AttributeError, TypeError, ValueError):  # not a plain function: keep it as it came
            pass
    return fn


#: Plain functions portal.run has checked and found to travel by name: their
#: ``func_ref`` (a function's module and qualname do not change; bounded, for
#: programs that make functions on the fly).
_BY_NAME: dict[FunctionType, tuple[str, str, bytes | None]] = {}
_BY_NAME_MAX = 1024


def _split_target(fn: Any, args: tuple[Any, ...]) -> tuple[str, str, bytes | None]:
    if isinstance(fn, str):
        if len(args) != 1 or not isinstance(args[0], str):
            raise TypeError(
                "the string form takes a module and a function name: portal.run('pkg.mod', 'fname', **kwargs)"
            )
        return fn, args[0], None
    if args:
        raise TypeError(
            f"arguments go by keyword: portal.run({getattr(fn, '__name__', fn)}, x=1), "
            f"not portal.run({getattr(fn, '__name__', fn)}, 1)"
        )
    return func_ref(fn)


def _addresses(value: Any, convert: Callable[[Any], Any]) -> Any:
    try:
        return convert(value)
    except (TypeError, ValueError):  # not our registry's answer: leave it as it came
        return value


#: the registry's answers that hold addresses, and how each comes back to the public
#: form: a tuple crosses the wire as a list, so (host, port) is rebuilt on this edge
_ADDRESS_ANSWERS: dict[str, Callable[[Any], Any]] = {
    "get_registry": lambda reg: {name: _transport.public_addr(addr) for name, addr in reg.items()},
    "find_actor": _transport.public_addr,
    "find_actors": lambda found: [[uid, _transport.public_addr(addr)] for uid, addr in found],
    "wait_for_actor": lambda addrs: [_transport.public_addr(addr) for addr in addrs],
}


def public_answer(ns: str, func: str, value: Any) -> Any:
    """``value`` as the registry's method ``func`` answered it locally: TCP addresses
    as ``(host, port)`` tuples again (see :data:`_ADDRESS_ANSWERS`)."""
    convert = _ADDRESS_ANSWERS.get(func) if ns == "self" else None
    return value if convert is None else _addresses(value, convert)


#: Argument types msgpack encodes as they are: a call with only these needs no
#: separate encoding pass for its arguments.
_SCALARS = frozenset({int, float, str, bytes, bool, type(None)})


def _scalars_only(kwargs: dict[str, Any]) -> bool:
    for value in kwargs.values():
        if type(value) not in _SCALARS:
            return False
    return True


class Portal:
    """A handle to call functions in another actor. Made by the runtime.

    Get one from ``ActorNursery.start_actor``/``run_in_actor``, ``find_actor`` or
    ``wait_for_actor``.
    """

    def __init__(self, channel: Channel, actor: Any) -> None:
        self.channel = channel
        self._actor = actor
        self._main_call: Call | None = None
        self._result: Any = _UNSET
        self._result_lock = trio.Lock()
        #: cancel_actor() was called: the actor's end is asked for, not a failure
        self._cancel_requested = False

    @property
    def cancel_requested(self) -> bool:
        """:meth:`cancel_actor` was called: the actor's end was asked for."""
        return self._cancel_requested

    def __repr__(self) -> str:
        return f"<Portal to {self.channel.uid}>"

    def _start(
        self,
        fn: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        kind: str,
        credit: int = 0,
        credit_bytes: int = 0,
        ref: tuple[str, str, bytes | None] | None = None,
    ) -> Call:
        """Send the Start of a call; return the caller's side of it (``ref``: how
        ``fn`` travels, if known)."""
        ns, name, code = ref or _split_target(fn, args)
        chan = self.channel
        call = Call(chan, chan.next_cid(), "caller", f"{ns}:{name}", self._actor)
        chan.calls[call.cid] = call
        if code is None and _scalars_only(kwargs):
            try:  # the common call: the arguments go inside the Start, encoded once
                chan.send_nowait(Start(call.cid, ns, name, kwargs, kind, credit, None, 0, credit_bytes))
                return call
            except (TypeError, ValueError, OverflowError):
                pass  # (an int past 64 bits, a frame too large): the general path says or pickles
            except BaseException:
                call.forget()
                raise
        try:
            # encoded once, here: an argument that cannot travel fails in the caller
            encoded, pickled = encode_args(kwargs, f"the arguments of {name}")
            call.check_typed_args(kwargs, pickled, f"the arguments of {name}")
            chan.send_nowait(Start(call.cid, ns, name, encoded, kind, credit, code, pickled, credit_bytes))
        except BaseException:
            call.forget()
            raise
        return call

    async def _wait_return(self, call: Call) -> Any:
        try:
            while True:
                msg = await call.next()
                if type(msg) is Return:
                    return call.decode_result(msg.pld)
                if type(msg) is not Started:
                    raise unbox(msg.err)
        except trio.Cancelled:
            call.request_cancel()
            raise
        finally:
            call.forget()

    async def run(self, fn: Any, *args: str, **kwargs: Any) -> Any:
        """Run ``fn(**kwargs)`` (sync or async) in the other actor; return its result.

        ``fn`` is a function, or two strings: ``portal.run('pkg.mod', 'fname', x=1)``.
        Its module must be enabled there (else a RemoteActorError whose ``.type`` is
        ModuleNotExposed). Cancelling the caller cancels the remote call.
        """
        plain = type(fn) is FunctionType and not args
        ref = _BY_NAME.get(fn) if plain else None
        if ref is None:
            if callable(fn) and (inspect.isasyncgenfunction(fn) or endpoint_kind(fn)):
                kind = endpoint_kind(fn) or "async generator"
                use = "open_context" if kind == "context" else "open_stream_from"
                raise TypeError(f"{fn.__qualname__} is a {kind} function: use `portal.{use}({fn.__name__})`")
            if plain:
                ref = func_ref(fn)
                if ref[2] is None:  # travels by name: the same answer next time
                    if len(_BY_NAME) >= _BY_NAME_MAX:
                        _BY_NAME.clear()
                    _BY_NAME[fn] = ref
        result = await self._wait_return(self._start(fn, args, kwargs, "call", ref=ref))
        if isinstance(fn, str) and args:  # the string form may name the registry's methods
            return public_answer(fn, args[0], result)
        return result

    async def run_from_ns(self, namespace_path: str, function_name: str, **kwargs: Any) -> Any:
        """Run ``namespace_path.function_name(**kwargs)``; namespace ``'self'`` is the
        remote Actor's own methods (``cancel``, ``get_registry``, ``wait_for_actor``...).

        The registry's answers hold TCP addresses as ``(host, port)`` tuples, as they
        were sent (the wire turns a tuple into a list; this side turns it back)."""
        result = await self._wait_return(self._start(namespace_path, (function_name,), kwargs, "call"))
        return public_answer(namespace_path, function_name, result)

    # -- run_in_actor's main function --
    def start_main(self, fn: Callable[..., Any], kwargs: dict[str, Any]) -> None:
        """Start the ``run_in_actor`` function whose result :meth:`result` returns
        (for the nursery)."""
        self._main_call = self._start(fn, (), kwargs, "call")

    async def wait_for_result(self) -> Any:
        """Current tractor's name for :meth:`result`."""
        return await self.result()

    async def result(self) -> Any:
        """The return value of the ``run_in_actor`` function (its error, boxed). Cached."""
        if self._main_call is None:
            raise NoResult(f"actor {self.channel.uid} was not started with run_in_actor: it has no result")
        async with self._result_lock:  # several tasks may ask at once
            if self._result is _UNSET:
                try:
                    self._result = ("ok", await self._wait_return(self._main_call))
                except trio.Cancelled:
                    raise
                except BaseException as exc:
                    self._result = ("err", exc)
        kind, value = self._result
        if kind == "err":
            raise value
        return value

    # -- streaming --
    @asynccontextmanager
    async def open_stream_from(self, async_gen_fn: Any, **kwargs: Any) -> AsyncIterator[MsgStream]:
        """Stream the values ``async_gen_fn(**kwargs)`` yields in the other actor (an
        async generator, or a legacy ``@stream`` function calling ``ctx.send_yield``).

        The stream is receive-only. Leaving the block early cancels the remote
        generator; leaving it after the stream ended raises the generator's error.
        """
        if endpoint_kind(async_gen_fn) == "context":
            raise TypeError(
                f"{async_gen_fn.__qualname__} is a @context function: use "
                f"`portal.open_context({async_gen_fn.__name__})`, not open_stream_from"
            )
        call = self._start(async_gen_fn, (), kwargs, "stream", credit=DEFAULT_WINDOW, credit_bytes=DEFAULT_WINDOW_BYTES)
        stream = MsgStream(call, window=DEFAULT_WINDOW, receive_only=True)
        call.stream_opened = True
        try:
            yield stream
        except BaseException as exc:
            call.close_stream()
            await call.cancel_and_wait(CANCEL_ACK_TIMEOUT)
            call.note_far_end_error(exc)
            raise
        call.close_stream()
        await self._finish_call(call)

    async def _finish_call(self, call: Call) -> None:
        """End a call we are leaving: cancel it if it still runs, wait (bounded) for its
        end, raise its error (unless it is our own cancel coming back)."""
        await call.cancel_and_wait(CANCEL_ACK_TIMEOUT)
        if call.final is not None:
            call.final_value()

    @asynccontextmanager
    async def open_context(self, fn: Callable[..., Any], **kwargs: Any) -> AsyncIterator[tuple[Context, Any]]:
        """Start ``@context fn(ctx, **kwargs)`` in the other actor; an async context
        manager yielding ``(ctx, first)``, ``first`` being what it passed to
        ``ctx.started()``.

        Leaving the block normally waits for the function's result (so the far end must
        return: close the stream or ``await ctx.cancel()`` first if it would run on).
        Leaving it with an error, or being cancelled, cancels the far end first and
        raises the block's own error.
        """
        kind = endpoint_kind(fn) or "context"
        if kind != "context":
            raise TypeError(
                f"{fn.__qualname__} is a {kind} function, not a @context one: use portal.open_stream_from({fn.__name__})"
            )
        call = self._start(fn, (), kwargs, "context")
        call.expect(*endpoint_types(fn))
        ctx = Context(call)
        # Made before Started arrives: the far end's Error may come in the same batch,
        # and a scope cancelled before it is entered is cancelled on entry.
        call.body_scope = trio.CancelScope()
        try:
            first = await call.wait_started()
        except BaseException:
            call.body_scope = None
            await call.cancel_and_wait()
            raise
        token = CURRENT_CTX.set(ctx)
        try:
            with call.body_scope:
                yield ctx, first
        except ContextCancelled as exc:
            if not call.is_own_cancel(exc):
                await call.cancel_and_wait()
                call.note_far_end_error(exc)
                raise
            # our own ctx.cancel() coming back from open_stream()/receive(): the block
            # ends as after any cancel of ours (tractor's rule), the result is None
        except BaseException as exc:
            # The body failed or was cancelled: stop the far end, then let the body's error
            # win; a different failure of the far end is not lost, it becomes a note.
            await call.cancel_and_wait()
            call.note_far_end_error(exc)
            raise
        finally:
            call.body_scope = None
            CURRENT_CTX.reset(token)
        try:
            await call.cancel_if_it_streams_unread()
            # Also raises the far end's error when it is what interrupted the body.
            await ctx.result()
        finally:
            call.forget()

    def request_cancel_nowait(self) -> Call:
        """Send the actor a cancel request without waiting; pass the returned call to
        :meth:`wait_cancel_acknowledged`. (For supervisors; users await
        :meth:`cancel_actor`.)"""
        return self._start("self", ("cancel",), {}, "call")

    async def wait_cancel_acknowledged(self, call: Call) -> None:
        """Wait until the actor answered the cancel request ``call`` (or the channel
        closed, which answers it as well)."""
        try:
            await self._wait_return(call)
        except Exception:
            pass  # an error or a closed channel: answered all the same

    async def cancel_actor(self, timeout: float = CANCEL_ACK_TIMEOUT) -> bool:
        """Ask the actor to stop; True if it acknowledged within ``timeout`` seconds."""
        if self.channel.closed:
            return False
        self._cancel_requested = True
        with trio.move_on_after(timeout):
            try:
                return bool(await self.run_from_ns("self", "cancel"))
            except Exception:
                return self.channel.closed
        return False

    async def aclose(self) -> None:
        pass


class LocalPortal:
    """A portal to this very actor (e.g. the registry when we host it)."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor
        self.channel = None

    async def run_from_ns(self, ns: str, function_name: str, **kwargs: Any) -> Any:
        fn = self.actor.resolve(ns, function_name, None)
        result = fn(**kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def run(self, fn: Any, *args: str, **kwargs: Any) -> Any:
        ns, name, _ = _split_target(fn, args)
        return await self.run_from_ns(ns, name, **kwargs)


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


_UNSET = _Unset()

__all__ = ["LocalPortal", "Portal", "func_ref"]
