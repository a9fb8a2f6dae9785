"""``%actor COMMAND ...``: the table of subcommands and what each one does."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from IPython.core.error import UsageError


@dataclass(frozen=True)
class Command:
    """One ``%actor`` subcommand: its arguments, a one-line help, and its handler."""

    usage: str
    help: str
    run: Callable[[Any, list[str]], Awaitable[Any]]
    needs_name: bool = False


COMMANDS: dict[str, Command] = {}


def command(name: str, usage: str, help: str, *, needs_name: bool = False) -> Callable[..., Any]:
    def register(fn: Callable[[Any, list[str]], Awaitable[Any]]) -> Callable[[Any, list[str]], Awaitable[Any]]:
        COMMANDS[name] = Command(usage, help, fn, needs_name)
        return fn

    return register


def line_help() -> str:
    """The help of ``%actor`` (``%actor?``): every subcommand, one line each."""
    width = max(len(f"%actor {c.usage}") for c in COMMANDS.values())
    rows = [f"  {f'%actor {c.usage}':{width}}  {c.help}" for c in COMMANDS.values()]
    return "Manage the notebook's actors (also spelled %actors).\n\n" + "\n".join(rows) + "\n"


async def run_command(session: Any, line: str) -> Any:
    """Parse and run one ``%actor`` line (trio side)."""
    __tracebackhide__ = True
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"bad %actor line {line!r}: {exc}") from None
    if not words:
        print(line_help())
        return None
    name, args = words[0], words[1:]
    cmd = COMMANDS.get(name)
    if cmd is None:
        raise UsageError(f"%actor has no command {name!r}; the commands: {', '.join(COMMANDS)} (see `%actor?`)")
    if cmd.needs_name and not args:
        raise UsageError(f"%actor {name} needs an actor name: `%actor {cmd.usage}`")
    return await cmd.run(session, args)


# -- the commands -------------------------------------------------------------------------
@command("ls", "ls", "list the notebook's actors: path, pid, parent pid, uptime, state")
async def _ls(session: Any, args: list[str]) -> Any:
    return ActorTable(session.actors.table())


@command("tree", "tree", "show the live tree widget of the whole actor tree")
async def _tree(session: Any, args: list[str]) -> Any:
    actors = session.actors
    try:
        from notebook_actors.widgets import tree
    except ImportError as exc:  # the notebook extra is missing: fall back to the table
        print(f"[notebook_actors] no tree widget ({exc}); pip install 'notebook_actors[notebook]'", file=sys.stderr)
        return ActorTable(actors.table())
    return tree()


@command(
    "kill", "kill NAME [NAME ...]", "stop actors (with their subtrees) and wait until they are gone", needs_name=True
)
async def _kill(session: Any, args: list[str]) -> None:
    actors = session.actors
    try:
        paths = actors.matching(args)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    for path in paths:
        if not await actors.kill(path):
            raise UsageError(f"no actor {path!r} in this notebook (see `%actor ls`)")


@command("killall", "killall", "stop every actor; the runtime keeps running")
async def _killall(session: Any, args: list[str]) -> None:
    actors = session.actors
    for path in [p for p in actors.handles if "/" not in p]:
        await actors.kill(path)


@command("restart", "restart NAME", "a new process and an empty namespace for NAME", needs_name=True)
async def _restart(session: Any, args: list[str]) -> None:
    actors = session.actors
    handle = actors.handles.get(args[0])
    await actors.ensure(args[0], handle.opts if handle else {}, new=True)


@command(
    "stack",
    "stack [--all] NAME [NAME ...]",
    "print where NAME's code is in every task and thread, also while it is stuck in blocking code "
    "(--all: with the runtime's own frames)",
    needs_name=True,
)
async def _stack(session: Any, args: list[str]) -> None:
    import notebook_actors as na
    from notebook_actors.ext import key_of

    everything = "--all" in args
    args = [a for a in args if a != "--all"]
    if not args:
        raise UsageError("%actor stack needs an actor name: `%actor stack [--all] NAME [NAME ...]`")
    actors = session.actors
    try:
        paths = actors.matching(args)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    for path in paths:
        handle = actors.handles.get(path)
        if handle is None or not handle.alive or not handle.uid:
            raise UsageError(f"no running actor {path!r} in this notebook (see `%actor ls`)")
        try:
            text = await na.dump_stacks(key_of(handle.uid), everything=everything)
        except (LookupError, RuntimeError) as exc:
            raise UsageError(f"%actor stack {path}: {exc}") from None
        print(text.rstrip("\n"))


@command("push", "push NAME VAR [VAR ...]", "copy kernel variables into NAME's namespace", needs_name=True)
async def _push(session: Any, args: list[str]) -> None:
    import notebook_actors as na

    path, names = args[0], args[1:]
    user_ns = session.shell.user_ns
    missing = [n for n in names if n not in user_ns]
    if missing or not names:
        raise UsageError(
            f"%actor push {path} needs variable names defined here; missing: {', '.join(missing) or '(none given)'}"
        )
    values = {n: user_ns[n] for n in names}
    try:
        await session.actors.push(path, values)
    except (TypeError, na.RemoteActorError) as exc:
        raise UsageError(f"%actor push {path}: {_first_line(exc)}") from None


@command("pull", "pull NAME VAR [VAR ...]", "copy variables of NAME's namespace into the kernel", needs_name=True)
async def _pull(session: Any, args: list[str]) -> None:
    import notebook_actors as na

    path, names = args[0], args[1:]
    if not names:
        raise UsageError(f"%actor pull {path} needs variable names, e.g. `%actor pull {path} result`")
    try:
        values = await session.actors.pull(path, names)
    except KeyError as exc:
        raise UsageError(exc.args[0]) from None
    except (TypeError, na.RemoteActorError) as exc:  # a missing or unencodable variable over there
        raise UsageError(f"%actor pull {path}: {_first_line(exc)}") from None
    session.shell.user_ns.update(values)


def _first_line(exc: BaseException) -> str:
    info = getattr(exc, "info", None)
    text = info.message if info is not None and getattr(info, "message", None) else str(exc)
    return text.strip().strip("\"'").splitlines()[0] if text.strip() else type(exc).__name__


@command("stop", "stop", "stop the whole actor tree (the extension stays loaded)")
async def _stop(session: Any, args: list[str]) -> None:
    from . import _extension

    await _extension.unload(session, keep_loaded=True)


@command("autoawait", "autoawait trio|asyncio", "where plain async cells run (default: trio)")
async def _autoawait(session: Any, args: list[str]) -> None:
    if args not in (["trio"], ["asyncio"]):
        raise UsageError("use `%actor autoawait trio` or `%actor autoawait asyncio`")
    session.trio_cells = args[0] == "trio"


@command("debug", "debug [NAME]", "open here the debugger session of an actor parked in its debugger")
async def _debug(session: Any, args: list[str]) -> None:
    from . import _debugger

    actors = session.actors

    def find_uid(path: str) -> Any:
        handle = actors.handles.get(path)
        return handle.uid or None if handle is not None else None

    try:
        note = await _debugger.open_parked(args[0] if args else None, find_uid)
    except LookupError as exc:
        raise UsageError(str(exc)) from None
    if note:
        print(f"[notebook_actors] {note}", file=sys.stderr)


class ActorTable:
    """``%actor ls``: one row per actor."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def __repr__(self) -> str:
        if not self.rows:
            return "no actors yet: a `%%actor NAME` cell spawns one"
        hosts = any(r.get("host") for r in self.rows)  # a HOST column once an actor runs elsewhere
        lines = [f"{'PATH':20} {'PID':>7} {'PARENT':>7} {'UPTIME':>9}  {'HOST  ' if hosts else ''}STATE"]
        for r in self.rows:
            host = f"{r.get('host') or 'here':6}" if hosts else ""
            lines.append(
                f"{r['path']:20} {r['pid'] or '-':>7} {r['ppid'] or '-':>7} {r['uptime']:>8.1f}s  {host}{r['state']}"
            )
        return "\n".join(lines)
