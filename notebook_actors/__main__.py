"""Command line: ``python -m notebook_actors ps [--watch]`` and ``stack NAME`` (also
``notebook-actors ps``).

``ps`` connects to a running program's registry (default: this user's registry socket, or
``$NOTEBOOK_ACTORS_REGISTRY``) with this user's tree secret, asks every registered
actor to describe itself, and prints the actors as a tree, like ``pstree``. ``stack
NAME`` asks the root of NAME's tree for NAME's task and thread stacks.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import trio

from . import _transport
from ._transport._rundir import default_registry_addr

#: Seconds one actor gets to answer before ps leaves it out.
ASK_TIMEOUT = 2.0


class NoRegistry(Exception):
    """Raised when nothing listens at the registry address."""


async def _ask(actor: Any, addr: str, nodes: dict[str, Any]) -> None:
    from ._portal import Portal

    with trio.move_on_after(ASK_TIMEOUT):
        try:
            chan = await actor.connect_to(addr)
            node = await Portal(chan, actor).run_from_ns("self", "tree_snapshot")
        except Exception:  # gone since it registered, or an older runtime
            return
        nodes[node["key"]] = node


async def collect_tree(actor: Any) -> dict[str, Any]:
    """The tree of every actor registered where ``actor`` is registered (minus itself)."""
    from ._discovery import get_registry

    async with get_registry() as reg:
        entries = await reg.run_from_ns("self", "get_registry")
    me = f"{actor.uid[0]}.{actor.uid[1]}"
    nodes: dict[str, Any] = {}
    async with trio.open_nursery() as n:
        for key, addr in entries.items():
            if key != me:
                n.start_soon(_ask, actor, addr, nodes)
    debug: dict[str, Any] = {"holder": None, "waiting": []}
    for node in nodes.values():
        debug = node.pop("repl", None) or debug  # the root's REPL lock
    return {"root": None, "nodes": nodes, "debug": debug}


async def ps(registry: str, watch: bool, interval: float, as_json: bool, out: Any = sys.stdout) -> None:
    from ._root import open_root_actor
    from ._tree import format_tree

    # No probing connection first: the program would log it as an unauthenticated peer.
    async with open_root_actor(name="ps", registry_addrs=[registry]) as actor:
        if actor.is_arbiter:  # we took the address ourselves: nobody listens there
            raise NoRegistry(
                f"no actor registry listens at {registry}; start your program first, "
                "or point --registry at the address it uses"
            )
        while True:
            tree = await collect_tree(actor)
            text = json.dumps(tree) if as_json else (format_tree(tree) or "(no actors)")
            if watch and not as_json:
                out.write("\x1b[H\x1b[2J")  # home + clear: redraw in place
                out.write(f"actors at {registry}  {time.strftime('%H:%M:%S')}\n")
            out.write(text + "\n")
            out.flush()
            if not watch:
                return
            await trio.sleep(interval)


class StackError(Exception):
    """Raised when no tree of the registry could dump the asked actor's stacks."""


async def stack(registry: str, name: str, out: Any = sys.stdout, everything: bool = False) -> None:
    """Print the stacks of actor ``name``: the root of its tree collects them (the
    actor's own trio loop may be stuck), see ``notebook_actors.dump_stacks``; the
    runtime's own frames only with ``everything``."""
    from ._portal import Portal
    from ._root import open_root_actor
    from .debug._stacks import DUMP_TIMEOUT

    async with open_root_actor(name="stack", registry_addrs=[registry]) as actor:
        if actor.is_arbiter:
            raise NoRegistry(
                f"no actor registry listens at {registry}; start your program first, "
                "or point --registry at the address it uses"
            )
        tree = await collect_tree(actor)
        roots = [node for node in tree["nodes"].values() if node["parent"] is None and node.get("addr")]
        answers: list[str] = []
        errors: list[str] = []

        async def ask_root(root: dict[str, Any]) -> None:
            with trio.move_on_after(DUMP_TIMEOUT + ASK_TIMEOUT) as scope:
                try:
                    chan = await actor.connect_to(root["addr"])
                    portal = Portal(chan, actor)
                    answers.append(
                        await portal.run_from_ns(
                            "notebook_actors.debug._stacks", "_dump_at_root", name_or_path=name, everything=everything
                        )
                    )
                except Exception as exc:  # the RemoteActorError says why (not found, timed out)
                    info = getattr(exc, "info", None)  # a boxed error: its own message
                    errors.append(info.message if info is not None else str(exc).splitlines()[0])
            if scope.cancelled_caught:
                errors.append(f"the root of {root['key']} (pid {root['pid']}) did not answer")

        async with trio.open_nursery() as n:
            for root in roots:
                n.start_soon(ask_root, root)
        if not answers:
            raise StackError("; ".join(dict.fromkeys(errors)) or "no running program is registered there")
        out.write(answers[0])
        out.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="notebook-actors", description="Inspect running actor trees.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("ps", help="print the actor tree of a running program, like pstree")
    p.add_argument(
        "--registry",
        default=None,
        help="registry address: host:port, a socket path, or uds:/tcp: form "
        "(default $NOTEBOOK_ACTORS_REGISTRY, else your own programs' registry on this host)",
    )
    p.add_argument("--watch", "-w", action="store_true", help="redraw until Ctrl-C")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between redraws (--watch)")
    p.add_argument("--json", action="store_true", help="print the tree as JSON")
    s = sub.add_parser("stack", help="print every task's and thread's stack of an actor (also when it is stuck)")
    s.add_argument("name", help="the actor's name, its name.uuid key, or a path of names (pool/worker)")
    s.add_argument("--registry", default=None, help="registry address (as for ps)")
    s.add_argument("--all", action="store_true", help="also the frames of notebook_actors, trio and Python")
    args = parser.parse_args(argv)
    import os

    given = args.registry or os.environ.get("NOTEBOOK_ACTORS_REGISTRY")
    registry = _transport.normalize_addr(given) if given else default_registry_addr()
    try:
        if args.command == "stack":
            trio.run(stack, registry, args.name, sys.stdout, args.all)
        else:
            trio.run(ps, registry, args.watch, args.interval, args.json)
    except (NoRegistry, StackError) as exc:
        print(f"notebook-actors {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
