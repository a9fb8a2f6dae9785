"""``%%actor``: run a cell in one actor or in several at once.

The magics registered with IPython carry the help text (``%%actor?``, ``%actor?``)
and, where the input transformer is not active (a terminal IPython), say clearly what
is missing; the work is :func:`run_actor_cell`, which the transformed cell awaits.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
from typing import Any

import trio
from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

import notebook_actors as na

from . import _dap, _debugger, _guest
from ._actors import CellCode, Gone, check_path, is_pattern
from ._outcomes import ActorGone, CellInterrupted, CellResult, CellsFailed, CellTimeout, cell_error
from ._output_server import CellWriter
from ._protocol import CellFailed
from ._protocol import CellInterrupted as Interrupted
from ._stdin import StdinRoute

NOT_A_KERNEL = (
    "notebook_actors: %%actor cells need a Jupyter kernel: the actor runtime runs as a trio "
    "guest on the kernel's asyncio loop, and this IPython has no running loop. "
    "Use a notebook (jupyter lab / jupyter console), or in a script `notebook_actors.run(main)`."
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        raise UsageError(f"{self.prog}: {message}; see `{self.prog}?`")


CELL_PARSER = _Parser(prog="%%actor", add_help=False)
CELL_PARSER.add_argument(
    "paths",
    nargs="+",
    metavar="NAME",
    help="the actor(s) to run in: `worker`, `parent/child` (spawned by and inside `parent`), "
    "several names, or a quoted glob of existing actors like 'pool/*'",
)
CELL_PARSER.add_argument(
    "--bg", action="store_true", help="return at once; the cell keeps running and its output still comes here"
)
CELL_PARSER.add_argument(
    "--timeout", type=float, default=None, metavar="S", help="interrupt the cell after S seconds (TimeoutError)"
)
CELL_PARSER.add_argument("--new", action="store_true", help="restart the actor first: a new process and namespace")
CELL_PARSER.add_argument(
    "--asyncio", action="store_true", help="spawn the actor infected with asyncio (trio as a guest on asyncio)"
)
CELL_PARSER.add_argument(
    "--debug", action="store_true", help="spawn the actor in debug mode (crashes open the debugger here)"
)
CELL_PARSER.add_argument(
    "--host",
    metavar="DEST",
    default=None,
    help="spawn the actor on another machine: an ssh destination, or the name of a launcher "
    "in this notebook (`far = na.SSHLauncher(...)`, `na.SlurmLauncher(...)`)",
)
CELL_PARSER.add_argument(
    "--group",
    choices=["order", "actor"],
    default="order",
    help="several actors: show output as it comes, each line labelled (order), or actor by actor (actor)",
)

CELL_HELP = """Run this cell in the actor process NAME (spawned on first use).

The actor keeps its own namespace between cells, like a kernel of its own, with `trio`
and `notebook_actors as na` imported; top-level `await` works (the code runs in the
actor's trio loop). print/stderr/warnings/logging, display() and matplotlib figures
appear live here, also while the cell blocks; input() prompts here; the last expression
is shown with its rich repr; an error shows the actor's traceback and the actor stays
alive. Interrupting the kernel cancels the cell in the actor (then sends it SIGINT if
it does not react).

With several names (or a glob), the cell runs in each of them at once: output is
labelled by actor, each one's value is shown, and the cell's value is a dict
{path: value}.
"""


@magics_class
class ActorMagics(Magics):
    """``%%actor`` and ``%actor``."""

    @cell_magic("actor")
    def actor(self, line: str, cell: str) -> None:
        raise UsageError(_fallback_message("%%actor"))

    @line_magic("actor")
    def actor_line(self, line: str) -> None:
        raise UsageError(_fallback_message("%actor"))

    @line_magic("actors")
    def actors_line(self, line: str) -> None:
        raise UsageError(_fallback_message("%actors"))


def _set_help() -> None:
    from ._commands import line_help

    ActorMagics.actor.__doc__ = CELL_HELP + "\n" + CELL_PARSER.format_help()
    ActorMagics.actor_line.__doc__ = ActorMagics.actors_line.__doc__ = line_help()


_set_help()


def _fallback_message(what: str) -> str:
    from ._session import NOT_LOADED

    if _guest.current() is None:
        return NOT_A_KERNEL if _loop_or_none() is None else NOT_LOADED
    return f"{what} must start the cell (a line of its own at the top level) to run in an actor"


def _loop_or_none() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


# -- running a cell -----------------------------------------------------------------------
async def run_actor_cell(session: Any, line: str, code: str, header: str, offset: int) -> Any:
    """Run ``code`` in the actor(s) named on the ``%%actor`` line (trio side)."""
    __tracebackhide__ = True
    args = parse_cell_line(line)
    actors = session.actors
    try:
        paths = actors.matching(args.paths)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.bg and len(paths) > 1:
        raise UsageError("--bg runs a cell in one actor; name one")
    opts = {"asyncio": args.asyncio, "debug": args.debug, "host": _host(session, args.host)}
    # IPython counts this cell before it runs it: its number is the one before
    cell = CellCode(code=code, header=header, offset=offset, count=session.shell.execution_count - 1)
    handles = await _ensure_all(actors, paths, opts, args.new)
    cell.filename = _dap.cell_filename([h.path for h in handles])  # JupyterLab's debugger panel
    if args.bg:
        actors.rt.start_soon(_run_in_background, actors, handles[0], cell)
        return _BackgroundCell(handles[0].path)
    with _timeout(args.timeout) as timed_out:
        if len(handles) == 1:
            return await _run_one(actors, handles[0], cell, timed_out, args.timeout)
        return await _run_many(actors, handles, cell, args.group, timed_out, args.timeout)


async def run_on_line(session: Any, line: str, code: str, header: str, offset: int) -> tuple[bool, Any]:
    """The ``%%actor`` cell on its actor's cell line, from the kernel's asyncio loop,
    when it can go there (plain code for one running local top-level actor, its line
    open, none of ``--bg``/``--new``/``--timeout``/``--host``): ``(True, its value)``;
    else ``(False, None)``, and the caller runs :func:`run_actor_cell` in trio."""
    __tracebackhide__ = True
    args = parse_cell_line(line)
    if args.bg or args.new or args.timeout is not None or args.host is not None or len(args.paths) != 1:
        return False, None
    if "await" in code or "async" in code:  # it may await: the portal's call, whose task
        return False, None  # the debugger's `q` cancels (see notebook_actors.breakpoint)
    actors = session.actors
    if asyncio.get_running_loop() is not actors.rt.loop:  # not the loop trio is a guest on
        return False, None
    name = args.paths[0]
    if is_pattern(name) or "/" in name.strip("/"):
        return False, None
    try:
        path = check_path(name)
    except ValueError:
        return False, None  # the trio path says what is wrong with it
    handle = actors.handles.get(path)
    if handle is None or actors.busy(path):
        return False, None
    # an open line means a live actor: the loop reads the end of a dead one's line
    cell_line = await actors.line_for(handle)
    if cell_line is None:
        return False, None
    cell = CellCode(code=code, header=header, offset=offset, count=session.shell.execution_count - 1)
    cell.filename = _dap.cell_filename([path])
    with _guest.running_cell(), _debugger.showing(f"%%actor {path}", _line_covers(session, handle)):
        ending = await actors.run_cell_on_line(cell_line, handle, cell, CellWriter(), StdinRoute())
    return True, _result_or_raise(path, ending, _NOT_TIMED, None)


def _line_covers(session: Any, handle: Any) -> Any:
    """The debugger sessions a line cell shows: its actor's and its subtree's first (as
    :func:`_showing`), then those of actors no ``%%actor`` cell spawned (as every cell
    run in trio, :meth:`Session._await_cell`); one view for both."""
    mine = _debugger.covers_actor(handle.uid)
    others = _debugger.covers_unnamed(session.is_notebook_actor)

    def covers(route: list[Any]) -> int | None:
        rank = mine(route)
        return rank if rank is not None else others(route)

    return covers


class _NotTimed:
    fired = False


_NOT_TIMED: Any = _NotTimed()


@functools.lru_cache(maxsize=256)
def parse_cell_line(line: str) -> argparse.Namespace:
    """The ``%%actor`` line's arguments (a notebook reruns the same few lines: parsed
    once each; the result is shared, never change it)."""
    import shlex

    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"bad %%actor line {line!r}: {exc}") from None
    if not words:
        raise UsageError("%%actor needs the name of an actor, e.g. `%%actor worker`; see `%%actor?`")
    return CELL_PARSER.parse_args(words)


def _host(session: Any, name: str | None) -> Any:
    """``--host``: a launcher of that name in the notebook's namespace, else an ssh destination."""
    found = session.shell.user_ns.get(name) if name else None
    return found if isinstance(found, na.Launcher) else name


async def _ensure_all(actors: Any, paths: list[str], opts: dict[str, Any], new: bool) -> list[Any]:
    if len(paths) == 1:  # no nursery (and no task) for the usual one
        try:
            return [await actors.ensure(paths[0], opts, new=new)]
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    handles: dict[str, Any] = {}

    async def ensure(path: str) -> None:
        handles[path] = await actors.ensure(path, opts, new=new)

    try:
        async with trio.open_nursery() as n:
            for path in paths:
                n.start_soon(ensure, path)
    except* ValueError as group:
        raise UsageError(str(group.exceptions[0])) from None
    return [handles[p] for p in paths]


class _timeout:
    """``--timeout S``: interrupt the running cell after S seconds."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.fired = False
        self._scope = trio.CancelScope()

    def __enter__(self) -> _timeout:
        cell_run = _guest.current_cell()
        if self.seconds is not None and cell_run is not None:
            _guest.current().start_soon(self._watch, cell_run)  # type: ignore[union-attr]
        return self

    async def _watch(self, cell_run: Any) -> None:
        with self._scope:
            await trio.sleep(self.seconds)  # type: ignore[arg-type]
            self.fired = True
            cell_run.interrupt()

    def __exit__(self, *exc: Any) -> None:
        self._scope.cancel()


def _showing(handles: list[Any]) -> Any:
    """The debugger shows, in this cell, sessions of these actors and their subtrees."""
    covers = [_debugger.covers_actor(h.uid) for h in handles]

    def any_of(route: list[Any]) -> int | None:
        ranks = [r for r in (c(route) for c in covers) if r is not None]
        return min(ranks) if ranks else None

    return _debugger.showing(f"%%actor {' '.join(h.path for h in handles)}", any_of)


async def _run_one(actors: Any, handle: Any, cell: Any, timed_out: _timeout, seconds: float | None) -> Any:
    __tracebackhide__ = True
    with _showing([handle]):
        ending = await actors.run_cell(handle, cell, CellWriter(), StdinRoute())
    if handle.line_address is None and not handle.opts.get("host"):
        actors.want_line(handle)  # its next cells go on its line, from asyncio
    return _result_or_raise(handle.path, ending, timed_out, seconds)


def _result_or_raise(path: str, ending: Any, timed_out: _timeout, seconds: float | None) -> Any:
    if timed_out.fired:
        raise CellTimeout(f"the cell in actor {path!r} ran longer than --timeout {seconds:g} s and was interrupted")
    if isinstance(ending, Gone):
        raise ActorGone(ending.message)
    if isinstance(ending, Interrupted):
        raise CellInterrupted(f"the cell in actor {path!r} was interrupted; the actor is still alive")
    if isinstance(ending, CellFailed):
        raise cell_error(path, ending)
    if ending.data is None:
        return None
    return CellResult(path, ending.data, ending.metadata, ending.value)


async def _run_many(
    actors: Any, handles: list[Any], cell: Any, group: str, timed_out: _timeout, seconds: float | None
) -> Any:
    """The cell in every actor at once; labelled output; ``{path: value}``."""
    __tracebackhide__ = True
    endings: dict[str, Any] = {}
    gathered: dict[str, list[Any]] = {h.path: [] for h in handles}
    stdin = StdinRoute()

    async def run(handle: Any) -> None:
        sink = gathered[handle.path].append if group == "actor" else None
        endings[handle.path] = await actors.run_cell(handle, cell, CellWriter(handle.path, sink), stdin)

    with _showing(handles):
        async with trio.open_nursery() as n:
            for handle in handles:
                n.start_soon(run, handle)
    for path, events in gathered.items():
        writer = CellWriter(path)
        for event in events:
            writer.show(event)
        writer.flush()
    return _many_results(endings, timed_out, seconds)


def _many_results(endings: dict[str, Any], timed_out: _timeout, seconds: float | None) -> Any:
    results: dict[str, Any] = {}
    failed: list[str] = []
    for path, ending in endings.items():
        try:
            results[path] = _result_or_raise(path, ending, timed_out, seconds)
        except (Exception, KeyboardInterrupt) as exc:
            failed.append(f"{path} ({type(exc).__name__})")
            lines = exc._render_traceback_() if hasattr(exc, "_render_traceback_") else [str(exc)]
            print("\n".join(f"[{path}] {line}" for line in lines), file=sys.stderr)
    values = ActorValues(results)
    if failed:
        values._ipython_display_()  # the others' results are not hidden by the error
        raise CellsFailed(f"the cell failed in {len(failed)} of {len(endings)} actors: {', '.join(failed)}")
    return values


class ActorValues(dict):
    """A several-actor cell's value: ``{path: value}``.

    A value that could travel (builtins) is itself; any other is its rendered
    :class:`CellResult`. Shown as each actor's labelled result.
    """

    def __init__(self, results: dict[str, CellResult | None]) -> None:
        super().__init__({p: r.value if r is not None and r.has_value else r for p, r in results.items()})
        self._results = results

    def _ipython_display_(self) -> None:
        from IPython.display import publish_display_data

        for path, result in self._results.items():
            if result is None:
                continue
            print(f"[{path}] Out:")
            sys.stdout.flush()
            publish_display_data(result.data, result.metadata)


async def _run_in_background(actors: Any, handle: Any, cell: Any) -> None:
    writer = CellWriter()
    try:
        ending = await actors.run_cell(handle, cell, writer, None)
        value = _result_or_raise(handle.path, ending, _timeout(None), None)
    except (Exception, KeyboardInterrupt) as exc:
        lines = exc._render_traceback_() if hasattr(exc, "_render_traceback_") else [f"{type(exc).__name__}: {exc}"]
        print(f"[--bg cell in actor {handle.path!r}] " + "\n".join(lines), file=sys.stderr)
    else:
        if value is not None:
            from IPython.display import publish_display_data

            publish_display_data(value.data, value.metadata)
    writer.flush()


class _BackgroundCell:
    def __init__(self, path: str) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"<cell running in the background in actor {self.path!r}; its output comes here>"
