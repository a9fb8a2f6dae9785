"""The extension's state in one kernel, and how cells reach trio.

A magic function is synchronous, but an actor cell must *await* (trio has to keep
running while the actor works). So a cleanup input transformer rewrites a cell that
starts with ``%%actor ...`` (and a line ``%actor ...``) into a top-level ``await`` of
the session's :meth:`Session.actor_cell` / :meth:`Session.actor_line`. IPython then
runs it as an async cell, and the session's ``run_code`` hook runs every async cell
inside trio (the kernel's guest run), so plain cells can ``await`` trio code and
``async with notebook_actors.open_nursery()``. An ``%%actor`` cell starts in asyncio:
it goes on its actor's cell line from there when it can (:mod:`._line`), and hands
itself to trio otherwise.

Everything the extension keeps between cells lives on the one :class:`Session`.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Awaitable
from typing import Any

from IPython import get_ipython
from IPython.core.error import UsageError

from . import _guest

_CELL_RE = re.compile(r"^%%actor(?:\s+(?P<line>.*))?$")
_LINE_RE = re.compile(r"^%actors?(?:\s+(?P<line>.*))?$")
_EXT_RE = re.compile(r"^%(?P<verb>unload|reload)_ext\s+notebook_actors\s*$")
#: What transformed cells call (they always run in trio, whatever autoawait says).
_OUR_CALLS = frozenset({"actor_line", "unload_ext", "reload_ext"})
#: What a transformed ``%%actor`` cell calls: it runs in asyncio, and hands itself to
#: trio unless it can go on its actor's cell line.
_ACTOR_CELL = "actor_cell"

NOT_LOADED = "the notebook_actors runtime is not running in this kernel: run `%load_ext notebook_actors` first"


#: The shell's attribute that holds its :class:`Session`.
SHELL_ATTR = "_notebook_actors"


def _call(method: str, *args: Any) -> str:
    # IPython's own transforms call get_ipython() too; few tokens: IPython tokenizes,
    # checks and compiles this line for every cell
    return f"await get_ipython().{SHELL_ATTR}.{method}({', '.join(repr(a) for a in args)})"


def transform_actor_cells(lines: list[str]) -> list[str]:
    """IPython cleanup transformer: ``%%actor``/``%actor`` become awaited session calls."""
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        return lines
    head = lines[first].rstrip("\n")
    match = _CELL_RE.match(head)
    if match and not head.rstrip().endswith("?"):
        body = "".join(lines[first + 1 :])
        header = "".join(lines[: first + 1]).rstrip("\n")
        return [_call("actor_cell", match.group("line") or "", body, header, first + 1) + "\n"]
    out = []
    for line in lines:
        stripped = line.rstrip("\n")
        if (m := _LINE_RE.match(stripped)) and not stripped.endswith("?"):
            out.append(_call("actor_line", m.group("line") or "") + "\n")
        elif ext := _EXT_RE.match(stripped):
            out.append(_call(f"{ext.group('verb')}_ext") + "\n")
        else:
            out.append(line)
    return out


_DRIVER = compile(_call("drive"), "<notebook_actors>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


class Session:
    """This kernel's notebook_actors: the shell, the actors, and the cell hand-off."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        setattr(shell, SHELL_ATTR, self)  # what the transformed cells call
        #: Run plain async cells in trio (``%actor autoawait trio|asyncio``).
        self.trio_cells = True
        self._actors: Any = None
        self._pending: list[Any] = []  # the async cell code run_code hands to drive()
        self._stopping: _guest.KernelRuntime | None = None
        self._reload = False

    # -- the actors ----------------------------------------------------------------------
    @property
    def actors(self) -> Any:
        """The notebook's actors (raises UsageError when the runtime is not running)."""
        from ._actors import NotebookActors

        rt = _guest.current()
        if rt is None:
            raise UsageError(NOT_LOADED)
        if self._actors is None or self._actors.rt is not rt:
            self._actors = NotebookActors(rt)
        return self._actors

    def is_notebook_actor(self, uid: Any) -> bool:
        """Whether ``uid`` is an actor that an ``%%actor`` cell spawned."""
        if self._actors is None:
            return False
        return any(h.uid == tuple(uid) for h in self._actors.handles.values())

    # -- what the transformed cells await ----------------------------------------------
    async def actor_cell(self, line: str, cell: str, header: str = "", offset: int = 1) -> Any:
        """An ``%%actor`` cell (asyncio): on its actor's cell line when it can go there,
        else in trio."""
        __tracebackhide__ = True
        from ._magics import run_actor_cell, run_on_line  # imports IPython's magics: not at import

        rt = _guest.current()
        if rt is None:
            raise UsageError(NOT_LOADED)
        ran, value = await run_on_line(self, line, cell, header, offset)
        if ran:
            return value
        try:
            return await rt.run_cell_task(self._await_cell, run_actor_cell(self, line, cell, header, offset))
        finally:
            await self._after_cell()

    async def actor_line(self, line: str) -> Any:
        __tracebackhide__ = True
        from ._commands import run_command

        return await run_command(self, line)

    async def unload_ext(self) -> None:
        """``%unload_ext notebook_actors``: stop the tree and wait until it is gone."""
        from . import _extension

        await _extension.unload(self)

    async def reload_ext(self) -> None:
        """``%reload_ext notebook_actors``: stop the tree, wait, start a fresh one."""
        from . import _extension

        await _extension.unload(self, reload=True)

    def stop_after_cell(self, rt: _guest.KernelRuntime | None, reload: bool = False) -> None:
        """Stop ``rt`` once the cell's trio part has returned (trio cannot wait for its
        own run to end); with ``reload``, load the extension again afterwards."""
        self._actors = None
        self._stopping = rt
        self._reload = reload

    # -- running async cells in trio ----------------------------------------------------
    def hook_run_code(self) -> None:
        """Run async cells inside trio (the shell's ``run_code``, wrapped once)."""
        original = self.shell.run_code
        if getattr(original, "_notebook_actors", False):
            return

        async def run_code(code_obj: Any, result: Any = None, *, async_: bool = False) -> Any:
            if async_ and _ACTOR_CELL in code_obj.co_names:  # it goes to trio itself when it must
                return await original(code_obj, result, async_=True)
            if async_ and _guest.current() is not None and (self.trio_cells or _OUR_CALLS & set(code_obj.co_names)):
                self._pending.append(code_obj)
                return await original(_DRIVER, result, async_=True)
            return await original(code_obj, result, async_=async_)

        run_code._notebook_actors = True  # type: ignore[attr-defined]
        self.shell.run_code = run_code

    def unhook_run_code(self) -> None:
        if getattr(self.shell.run_code, "_notebook_actors", False):
            del self.shell.run_code  # back to the class's method

    async def drive(self) -> Any:
        """Run the pending async cell code inside trio; interrupts become KeyboardInterrupt."""
        __tracebackhide__ = True
        code_obj = self._pending.pop()
        coro = eval(code_obj, self.shell.user_global_ns, self.shell.user_ns)
        rt = _guest.current()
        if rt is None:
            coro.close()
            raise UsageError(NOT_LOADED)
        try:
            return await rt.run_cell_task(self._await_cell, coro)
        finally:
            await self._after_cell()

    async def _await_cell(self, coro: Awaitable[Any]) -> Any:
        __tracebackhide__ = True
        from . import _debugger

        try:
            with _debugger.showing("cell", _debugger.covers_unnamed(self.is_notebook_actor)):
                return await coro
        except TypeError as exc:
            if "unrecognized yield message" not in str(exc):
                raise
            raise TypeError(
                "this cell awaited asyncio code, but with notebook_actors loaded async cells run in trio. "
                "Call asyncio code with `await notebook_actors.to_asyncio.run_task(async_fn, **kwargs)`, "
                "or switch plain cells back with `%actor autoawait asyncio`."
            ) from None

    async def _after_cell(self) -> None:
        rt, self._stopping = self._stopping, None
        reload, self._reload = self._reload, False
        if rt is not None:
            try:
                await rt.stop()
            except TimeoutError:
                print("[notebook_actors] the actor tree did not stop in time", file=sys.stderr)
        if reload:
            from . import _extension

            _extension.load(self.shell)
            self.shell.extension_manager.loaded.add("notebook_actors")


_session: Session | None = None


def current() -> Session:
    """This kernel's session (made on first use)."""
    global _session
    shell = get_ipython()
    if _session is None or _session.shell is not shell:
        _session = Session(shell)
    return _session
