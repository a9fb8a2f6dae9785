"""The live structure of an actor tree: who runs, in which state, doing which calls.

Every actor can describe itself (:func:`describe_actor`). A parent learns about its
children's subtrees through a long-lived :func:`tree_feed` context to each child:
the child sends one snapshot, then compact deltas at most every ``interval`` seconds
and only when something changed. The parent merges those with its own records of
its children (a spawning child cannot describe itself yet; an exited one no longer
can), so the root's view is the whole tree. Nothing runs unless someone watches:
closing the last watch stops every feed, and a feed never keeps an actor alive (it
is an ordinary RPC that the actor's shutdown cancels).

Everything here is plain JSON (str/int/float/list/dict), ready for a widget trait or
a terminal.

A node (one actor) is a dict::

    {"key": "name.uuid", "name", "uid": [name, uuid], "pid", "parent": key | None,
     "state": "spawning" | "idle" | "running" | "streaming" | "debugger"
              | "cancelling" | "crashed" | "exited",
     "exitcode": int | None, "error": str | None, "started": epoch seconds,
     "cpu": percent, "rss": bytes, "addr", "activity": str | None,
     "activity_since": epoch seconds | None, "traceback": str | None,
     "calls": [{"fn", "side": "caller" | "callee", "peer": key, "stream": bool,
                "sent", "recv", "rate": msgs/s}],
     "output": [recent lines]}

A tree is ``{"root": key, "nodes": {key: node}, "debug": {"holder": key | None,
"waiting": [key], "parked": [key]}}``; a delta is ``{"set": {key: node}, "del": [key], "debug": ...}``.
"""

from __future__ import annotations

import collections
import io
import logging
import os
import sys
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import trio

from . import _hooks
from ._context import context

log = logging.getLogger("notebook_actors.tree")

#: Seconds between two updates of a watch (and of each feed up the tree).
DEFAULT_INTERVAL = 0.5
#: Seconds an exited child stays in the tree (so a watcher sees how it ended).
EXITED_LINGER = 2.0
#: Seconds a crashed child stays in the tree.
CRASHED_LINGER = 60.0
#: Seconds over which CPU % is measured, and the change (points) worth publishing.
CPU_WINDOW = 2.0
CPU_DEADBAND = 2.0
#: Granularity of the RSS figure (bytes).
RSS_STEP = 128 * 1024
#: Lines of recent output kept per actor.
OUTPUT_TAIL = 20

#: Runtime-internal calls that are not the actor's own work (add-ons add theirs with
#: :func:`hide_calls`).
FEED_CALL = "notebook_actors._tree:tree_feed"
_INTERNAL_CALLS = set(
    {
        FEED_CALL,
        "notebook_actors.debug._relay:_repl_relay",
        "self:tree_snapshot",
        "self:register_actor",
        "self:unregister_actor",
        "self:ping",
        "self:cancel",
        "self:get_registry",
        "self:find_actor",
        "self:find_actors",
    }
)


def key_of(uid: Any) -> str:
    """The tree key of an actor: ``'name.uuid'`` (the registry's format)."""
    return f"{uid[0]}.{uid[1]}"


# -- what an actor knows about itself ----------------------------------------------------


class _LocalInfo:
    """Per-process facts the runtime does not keep: psutil handle, rates, hooks' state."""

    def __init__(self) -> None:
        import psutil

        self.proc = psutil.Process()
        self.proc.cpu_percent(None)  # the first call only starts the measurement
        try:
            self.started = self.proc.create_time()
        except Exception:
            self.started = time.time()
        self.cpu = 0.0
        self.cpu_at = time.monotonic()
        # ctx -> (count, t, rate); weak, so an ended call's entry goes with its context
        # (keyed by id() it would stay forever, and a new context reusing the id would
        # inherit its count)
        self.rates: weakref.WeakKeyDictionary[Any, tuple[int, float, float]] = weakref.WeakKeyDictionary()
        self.state_override: str | None = None
        self.activity: str | None = None
        self.activity_since: float | None = None
        self.output: collections.deque[str] = collections.deque(maxlen=OUTPUT_TAIL)
        self.debug_holder: str | None = None
        self.debug_waiting: list[str] = []
        self.debug_parked: list[str] = []
        # key -> [(text, since)]: what this process asked other actors to do (newest last)
        self.peer_activity: dict[str, list[tuple[str, float]]] = {}

    def cpu_percent(self) -> float:
        # psutil measures since the previous call. One clock tick is 10 ms, so a short
        # window makes an idle actor flicker between 0 and 2 %, and every flicker is an
        # update of the whole tree: measure over CPU_WINDOW seconds, and publish a new
        # figure only when it moved by at least CPU_DEADBAND points.
        now = time.monotonic()
        if now - self.cpu_at >= CPU_WINDOW:
            try:
                measured = float(round(self.proc.cpu_percent(None)))
            except Exception:
                measured = 0.0
            if abs(measured - self.cpu) >= CPU_DEADBAND:
                self.cpu = measured
            self.cpu_at = now
        return self.cpu

    def rss(self) -> int:
        # in steps of RSS_STEP, for the same reason
        try:
            return int(self.proc.memory_info().rss) // RSS_STEP * RSS_STEP
        except Exception:
            return 0

    def rate(self, ctx: Any, count: int) -> float:
        now = time.monotonic()
        prev = self.rates.get(ctx)
        if prev is None:
            self.rates[ctx] = (count, now, 0.0)
            return 0.0
        n0, t0, rate = prev
        if now - t0 >= 0.25:
            rate = round((count - n0) / (now - t0), 1)
            self.rates[ctx] = (count, now, rate)
        return rate


_local: _LocalInfo | None = None


def _info() -> _LocalInfo:
    global _local
    if _local is None or _local.proc.pid != os.getpid():
        _local = _LocalInfo()
    return _local


def set_state(state: str | None) -> None:
    """Override this actor's state word (e.g. ``"debugger"`` while a REPL is open);
    ``None`` goes back to the state derived from its calls. For the debugger."""
    _info().state_override = state


def set_activity(text: str | None) -> None:
    """Say what this actor is doing right now (e.g. ``"cell [5]"``), shown beside it
    with the time since it began; the actor's state is ``running`` meanwhile."""
    info = _info()
    if text != info.activity:
        info.activity_since = time.time() if text else None
    info.activity = text


@contextmanager
def activity_of(uid: Any, text: str) -> Iterator[None]:
    """While the block runs, show actor ``uid`` doing ``text`` (e.g. the kernel's
    ``"cell [5]"`` for the cell it sent there), unless that actor says something newer
    itself. The caller knows it even while the actor cannot report (a cell stuck in
    blocking code freezes the actor's own feed)."""
    if not uid:  # an actor not known yet
        yield
        return
    key = key_of(uid)
    entry = (text, time.time())
    mine = _info().peer_activity.setdefault(key, [])
    mine.append(entry)
    try:
        yield
    finally:
        mine.remove(entry)
        if not mine:
            _info().peer_activity.pop(key, None)


def _fill_peer_activity(nodes: dict[str, Any], known: dict[str, list[tuple[str, float]]]) -> None:
    for key, entries in known.items():
        node = nodes.get(key)
        if node is None or not entries or node["state"] in ("exited", "crashed", "debugger", "cancelling"):
            continue
        text, since = entries[-1]
        if node["activity"] and (node["activity_since"] or 0) >= since:
            continue  # the actor's own word is as new
        nodes[key] = {**node, "activity": text, "activity_since": since, "state": "running"}


def hide_calls(*fn_names: str) -> None:
    """Leave calls of ``fn_names`` (``"module:function"``) out of every node's calls and
    state: an add-on's plumbing (a notebook cell's output stream, say), not the actor's
    own work. The add-on says what the actor does instead with :func:`set_activity`."""
    _INTERNAL_CALLS.update(fn_names)


def set_debug_lock(holder: Any = None, waiting: Any = ()) -> None:
    """Publish who holds the tree-wide REPL lock and who waits for it (uids), at the
    root. For the debugger; a watch shows it as ``tree["debug"]``."""
    info = _info()
    info.debug_holder = key_of(holder) if holder else None
    info.debug_waiting = [key_of(uid) for uid in waiting]


def set_debug_parked(parked: Any = ()) -> None:
    """Publish the actors parked in their debugger until a notebook cell opens their
    session (uids), at the root. A watch shows them as ``tree["debug"]["parked"]``."""
    _info().debug_parked = [key_of(uid) for uid in parked]


def record_output(text: str) -> None:
    """Add output to this actor's recent-output tail (shown when a node is expanded)."""
    out = _info().output
    for line in text.splitlines():
        if line.strip():
            out.append(line[-300:])


class _TeeOutput(io.TextIOBase):
    """Write-through wrapper of a child's stdout/stderr that keeps a tail of it."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._partial = ""

    def write(self, text: str) -> int:
        n: int = self._inner.write(text)
        self._partial += text
        if "\n" in self._partial:
            done, _, self._partial = self._partial.rpartition("\n")
            record_output(done)
        return n

    def flush(self) -> None:
        self._inner.flush()

    def fileno(self) -> int:
        fd: int = self._inner.fileno()
        return fd

    def isatty(self) -> bool:
        return bool(self._inner.isatty())

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._inner, "encoding", "utf-8")

    def __getattr__(self, name: str) -> Any:  # buffer, name, errors, a wrapped stream's own API
        return getattr(self._inner, name)


def _capture_output() -> None:
    """Tee this (child) process's stdout and stderr into its output tail, once."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, _TeeOutput):
            setattr(sys, name, _TeeOutput(stream))


def _calls(actor: Any, info: _LocalInfo) -> list[dict[str, Any]]:
    calls = []
    for chan in actor.channels():
        for call in list(chan.calls.values()):
            if call.fn_name in _INTERNAL_CALLS:
                continue
            stream = call.stream
            sent = stream.sent if stream is not None else 0
            recv = stream.received if stream is not None else 0
            calls.append(
                {
                    "fn": call.fn_name,
                    "side": call.side,
                    "peer": key_of(chan.uid) if chan.uid else None,
                    "stream": stream is not None and not stream.closed,
                    "sent": sent,
                    "recv": recv,
                    "rate": info.rate(call, sent + recv),
                }
            )
    calls.sort(key=lambda c: (c["fn"], c["side"], c["peer"] or ""))
    return calls


def _derived_state(actor: Any, calls: list[dict[str, Any]], activity: str | None) -> str:
    if actor.cancel_called:
        return "cancelling"
    if activity:  # a notebook cell streams its output: it is running the cell, not streaming
        return "running"
    if any(c["stream"] for c in calls):
        return "streaming"
    if calls:
        return "running"
    return "idle"


def _node(uid: Any, parent: str | None, state: str, **known: Any) -> dict[str, Any]:
    """A tree node with every key present: what the describer does not know (a parent
    knows little about a child) stays empty."""
    node = {
        "key": key_of(uid),
        "name": uid[0],
        "uid": list(uid),
        "pid": None,
        "parent": parent,
        "state": state,
        "exitcode": None,
        "error": None,
        "started": None,
        "cpu": 0.0,
        "rss": 0,
        "addr": None,
        "activity": None,
        "activity_since": None,
        "traceback": None,
        "calls": [],
        "output": [],
        "host": None,  # another machine it runs on (a launcher's host); None: the root's
    }
    node.update(known)
    return node


def describe_actor(actor: Any) -> dict[str, Any]:
    """This actor as a tree node (see the module docstring)."""
    info = _info()
    calls = _calls(actor, info)
    parent = actor.parent_chan.uid if actor.parent_chan is not None else None
    return _node(
        actor.uid,
        key_of(parent) if parent else None,
        info.state_override or _derived_state(actor, calls, info.activity),
        pid=actor.pid,
        started=info.started,
        cpu=info.cpu_percent(),
        rss=info.rss(),
        addr=actor.addr,
        host=os.environ.get("NOTEBOOK_ACTORS_HOST"),
        activity=info.activity,
        activity_since=info.activity_since,
        calls=calls,
        output=list(info.output),
        # the tree's REPL lock lives in the root: a terminal `ps` reads it from here
        **({"repl": {"holder": info.debug_holder, "waiting": list(info.debug_waiting)}} if info.debug_holder else {}),
    )


def snapshot_of(actor: Any) -> dict[str, Any]:
    """RPC ``run_from_ns('self', 'tree_snapshot')``: this actor as a tree node, with
    its children (what ``python -m notebook_actors ps`` walks)."""
    return {**describe_actor(actor), "children": [list(uid) for uid in actor.children]}


_hooks.add_self_rpc("tree_snapshot", snapshot_of)
_hooks.serve_runtime_module(__name__)  # the tree feed: every actor serves it


#: (actor, child record, monotonic time) of children that exited lately, so that a
#: watch also shows the end of a child that lived and died between two refreshes.
_recent_exits: collections.deque[tuple[Any, Any, float]] = collections.deque(maxlen=256)


def child_exited(actor: Any, child: Any) -> None:
    """Hook for the supervisor: ``child`` of ``actor`` has just been reaped."""
    _recent_exits.append((actor, child, time.monotonic()))


_hooks.on_child_exited(child_exited)


def _crashed(child: Any, error: str | None) -> bool:
    """The supervisor's own verdict: it died (or lost its result) without being asked
    to stop, or of a signal nobody in the tree sent."""
    from ._supervise import _killed_by_someone_else

    died = child.exitcode not in (0, None) or getattr(child, "lost_result", False)
    asked = getattr(child, "asked_to_stop", child.cancel_requested)
    return error is not None or (died and (not asked or _killed_by_someone_else(child)))


#: Lines of a crashed actor's traceback kept in its node (the end: where it raised).
TRACEBACK_TAIL = 12


_HIDDEN_FRAMES = (os.path.dirname(__file__) + os.sep, os.path.dirname(trio.__file__) + os.sep)


def _user_frames(tb: str) -> list[str]:
    """The lines of traceback text ``tb`` without the frames of our runtime and trio
    (what the user wrote is what they need to see)."""
    out: list[str] = []
    hiding = False
    for line in tb.rstrip().splitlines():
        if line.startswith("  File "):
            hiding = any(f'"{d}' in line for d in _HIDDEN_FRAMES)
        elif not line.startswith("    "):
            hiding = False
        if not hiding:
            out.append(line)
    return out


def _error_of(exc: BaseException) -> tuple[str, str | None]:
    """A readable one-line error and the traceback's tail: ``"ValueError: boom"``, not
    the uid tuple that ``str(RemoteActorError)`` begins with."""
    from ._exceptions import RemoteActorError

    if isinstance(exc, RemoteActorError):
        message = exc.info.message.strip().splitlines()
        line = exc.type_name + (f": {message[0]}" if message else "")
        src = exc.src_uid
        if src and len(exc.relay_path) > 1:
            line += f" (raised in {src[0]})"
        tb = _user_frames(exc.tb_str)[-TRACEBACK_TAIL:]
        return line[:300], "\n".join(tb) or None
    text = str(exc).strip().splitlines()
    return (f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__)[:300], None


def _death_of(code: int | None) -> str:
    if code is not None and code < 0:
        import signal

        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            pass
    return f"died with exit code {code}"


def _record_node(child: Any, parent_key: str) -> dict[str, Any]:
    """A child as its parent's supervisor sees it (before it reports, after it exits)."""
    proc = child.proc
    error = traceback = None
    result = getattr(child.portal, "_result", None)
    if isinstance(result, tuple) and result[0] == "err" and type(result[1]).__name__ != "ContextCancelled":
        error, traceback = _error_of(result[1])
    code = child.exitcode
    if child.exited.is_set():
        crashed = _crashed(child, error)
        state = "crashed" if crashed else "exited"
        if crashed and error is None:
            error = _death_of(code)
    elif child.cancel_requested:
        state = "cancelling"
    elif not child.started.is_set():
        state = "spawning"
    else:
        state = "running"
    return _node(
        child.uid,
        parent_key,
        state,
        pid=getattr(proc, "remote_pid", proc.pid) if proc is not None else None,
        exitcode=code if child.exited.is_set() else None,
        error=error,
        traceback=traceback,
        addr=child.chan.peer_addr,
        host=getattr(child.launcher, "host", None),
    )


# -- merging children's subtrees -------------------------------------------------------


@context
async def tree_feed(ctx: Any, interval: float = DEFAULT_INTERVAL) -> None:
    """RPC (a context, served by every actor): stream this actor's subtree to the
    caller, a snapshot first and deltas after (see :func:`serve_feed`)."""
    from ._state import current_actor

    await serve_feed(current_actor(), ctx, interval)


def diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The delta that turns node map ``old`` into ``new`` (empty dict: no change)."""
    changed = {k: v for k, v in new.items() if old.get(k) != v}
    gone = [k for k in old if k not in new]
    delta: dict[str, Any] = {}
    if changed:
        delta["set"] = changed
    if gone:
        delta["del"] = gone
    return delta


def apply_delta(nodes: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any]:
    """A new node map: ``nodes`` with ``delta`` applied."""
    out = dict(nodes)
    for k in delta.get("del", ()):
        out.pop(k, None)
    out.update(delta.get("set", {}))
    return out


class _Subtree:
    """This actor's merged subtree, refreshed every ``interval`` while it runs."""

    def __init__(self, actor: Any, interval: float) -> None:
        self.actor = actor
        self.interval = interval
        self.key = key_of(actor.uid)
        self.nodes: dict[str, Any] = {}
        self.debug: dict[str, Any] = {"holder": None, "waiting": [], "parked": []}
        self.version = 0
        self._changed = trio.lowlevel.ParkingLot()
        self._remote: dict[tuple[str, str], dict[str, Any]] = {}
        self._seen: dict[tuple[str, str], Any] = {}  # uid -> child record
        self._exited_at: dict[tuple[str, str], float] = {}
        self._seen_at: dict[tuple[str, str], float] = {}
        self._feeding: set[tuple[str, str]] = set()
        self._nursery: trio.Nursery | None = None

    @property
    def feeds(self) -> int:
        """How many children's own trees this subtree follows."""
        return len(self._feeding)

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as n:
            self._nursery = n
            self.refresh()
            task_status.started()
            while True:
                await trio.sleep(self.interval)
                self.refresh()

    def refresh(self) -> None:
        """Recompute the subtree; wake followers if it changed."""
        now = time.monotonic()
        for uid, child in list(self.actor.children.items()):
            self._seen.setdefault(uid, child)
            self._seen_at.setdefault(uid, now)
        for actor, child, at in list(_recent_exits):
            if actor is self.actor and child.uid not in self._seen and now - at < CRASHED_LINGER:
                self._seen[child.uid] = child
                self._exited_at[child.uid] = at
        nodes = {self.key: describe_actor(self.actor)}
        for uid, child in list(self._seen.items()):
            if child.exited.is_set():
                self._exited_at.setdefault(uid, now)
            node = _record_node(child, self.key)
            if uid in self._exited_at:
                linger = CRASHED_LINGER if node["state"] == "crashed" else EXITED_LINGER
                if now - self._exited_at[uid] > linger or self._respawned(uid):
                    del self._seen[uid]
                    self._seen_at.pop(uid, None)
                    self._remote.pop(uid, None)
                    continue
                nodes[node["key"]] = node
                continue
            if child.started.is_set() and uid not in self._feeding and self._nursery is not None:
                self._feeding.add(uid)
                self._nursery.start_soon(self._follow_child, child)
            sub = self._remote.get(uid)
            if sub and node["key"] in sub:
                nodes.update(sub)
                own = dict(sub[node["key"]])
                own["parent"] = self.key
                if node["state"] == "cancelling" and own["state"] not in ("debugger", "crashed"):
                    own["state"] = "cancelling"
                nodes[node["key"]] = own
            else:
                nodes[node["key"]] = node
        info = _info()
        _fill_peer_activity(nodes, info.peer_activity)
        debug: dict[str, Any] = {
            "holder": info.debug_holder,
            "waiting": list(info.debug_waiting),
            "parked": list(info.debug_parked),
        }
        # The root knows who is in (or queued for) the REPL: make those stand out.
        for key in [info.debug_holder, *info.debug_waiting, *info.debug_parked]:
            if key in nodes and nodes[key]["state"] not in ("exited", "crashed", "debugger"):
                nodes[key] = {**nodes[key], "state": "debugger"}
        if nodes != self.nodes or debug != self.debug:
            self.nodes, self.debug = nodes, debug
            self.version += 1
            self._changed.unpark_all()

    def _respawned(self, uid: tuple[str, str]) -> bool:
        """A live child of the same name came after ``uid`` ended (a restart): the new
        one's row replaces the old one's ending."""
        ended = self._exited_at[uid]
        return any(
            other[0] == uid[0] and not child.exited.is_set() and self._seen_at.get(other, 0) > ended
            for other, child in self._seen.items()
        )

    async def _follow_child(self, child: Any) -> None:
        """Mirror ``child``'s own subtree into ``self._remote`` until it goes away."""
        uid = child.uid
        try:
            async with child.portal.open_context(tree_feed, interval=self.interval) as (ctx, first):
                self._remote[uid] = first
                async with ctx.open_stream() as stream:
                    async for delta in stream:
                        self._remote[uid] = apply_delta(self._remote.get(uid, {}), delta)
        except trio.Cancelled:
            raise
        except BaseException as exc:  # the child exits or crashes: its record tells how
            log.debug("tree feed from %s ended: %r", uid, exc)
        finally:
            self._remote.pop(uid, None)

    def snapshot(self) -> dict[str, Any]:
        return {"root": self.key, "nodes": self.nodes, "debug": self.debug}

    async def wait_changed(self, version: int) -> None:
        while self.version == version:
            await self._changed.park()


class TreeWatch:
    """A live view of the tree below this actor (from :func:`open_tree_watch`).

    ``snapshot()`` is the current tree; ``async for delta in watch`` yields each change
    (throttled to one per interval). Both are plain JSON.
    """

    def __init__(self, subtree: _Subtree) -> None:
        self._sub = subtree
        self._seen_nodes: dict[str, Any] = {}
        self._seen_debug: Any = None
        self._version = -1

    def snapshot(self) -> dict[str, Any]:
        """The whole tree as it is now: ``{"root", "nodes", "debug"}``."""
        return self._sub.snapshot()

    def __aiter__(self) -> TreeWatch:
        return self

    async def __anext__(self) -> dict[str, Any]:
        while True:
            await self._sub.wait_changed(self._version)
            self._version = self._sub.version
            delta = diff(self._seen_nodes, self._sub.nodes)
            if self._sub.debug != self._seen_debug:
                delta["debug"] = self._sub.debug
            self._seen_nodes, self._seen_debug = self._sub.nodes, self._sub.debug
            if delta:
                return delta

    def statistics(self) -> dict[str, int]:
        return {"actors": len(self._sub.nodes), "version": self._sub.version, "feeds": self._sub.feeds}


@asynccontextmanager
async def open_tree_watch(interval: float = DEFAULT_INTERVAL) -> AsyncIterator[TreeWatch]:
    """Watch the actor tree below this actor (the whole tree, at the root).

    An async context manager yielding a :class:`TreeWatch`. Usable in any actor,
    without Jupyter. While it is open, each actor below reports its subtree to its
    parent at most every ``interval`` seconds; leaving the block stops that. It never
    keeps an actor alive: an actor that exits simply leaves the tree (after showing
    ``exited``/``crashed`` for a moment).

    Raises:
        NoRuntime: no actor runtime runs in this process.
    """
    from ._state import current_actor

    actor = current_actor()
    sub = _Subtree(actor, interval)
    async with trio.open_nursery() as n:
        await n.start(sub.run)
        try:
            yield TreeWatch(sub)
        finally:
            n.cancel_scope.cancel()


async def serve_feed(actor: Any, ctx: Any, interval: float) -> None:
    """The child side of :func:`tree_feed`: stream this actor's subtree to the caller."""
    if actor.parent_addr is not None:
        _capture_output()
    sub = _Subtree(actor, interval)
    async with trio.open_nursery() as n:
        await n.start(sub.run)
        seen = sub.nodes
        version = sub.version
        await ctx.started(seen)
        async with ctx.open_stream() as stream:
            while True:
                await sub.wait_changed(version)
                version = sub.version
                delta = diff(seen, sub.nodes)
                seen = sub.nodes
                if delta:
                    await stream.send(delta)


# -- printing (``python -m notebook_actors ps``) -----------------------------------------


def _fmt_bytes(n: int | None) -> str:
    if not n:
        return "-"
    size = float(n)
    for unit in ("B", "K", "M", "G"):
        if size < 1024 or unit == "G":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return "-"


def _fmt_age(started: float | None, now: float) -> str:
    if not started:
        return "-"
    s = int(max(0, now - started))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02}:{s:02}" if h else f"{m}:{s:02}"


def state_word(node: dict[str, Any]) -> str:
    """The state as a word, with the exit code or signal when it ended."""
    state: str = node["state"]
    code = node.get("exitcode")
    if state == "crashed" and code == 0:  # it raised: its error says why, not its exit code
        return state
    if state in ("exited", "crashed") and code is not None:
        if code < 0:
            import signal

            try:
                return f"{state}({signal.Signals(-code).name})"
            except ValueError:
                pass
        return f"{state}({code})"
    return state


def format_tree(tree: dict[str, Any], now: float | None = None) -> str:
    """The tree like ``pstree``: one actor per line, children indented below parents."""
    now = time.time() if now is None else now
    nodes = tree["nodes"]
    kids: dict[str | None, list[str]] = collections.defaultdict(list)
    for key, node in nodes.items():
        parent = node.get("parent")
        kids[parent if parent in nodes else None].append(key)
    lines: list[str] = []

    def walk(key: str, prefix: str, last: bool, top: bool) -> None:
        node = nodes[key]
        branch = "" if top else ("└─ " if last else "├─ ")
        streams = sum(1 for c in node.get("calls", ()) if c["stream"])
        extra = f"  {streams} stream{'s' * (streams != 1)}" if streams else ""
        if node.get("error"):
            extra += f"  ! {node['error']}"
        lines.append(
            f"{prefix}{branch}{node['name']} [{node['pid'] or '?'}] {state_word(node)}"
            f"  up {_fmt_age(node.get('started'), now)}  cpu {node.get('cpu', 0):.0f}%"
            f"  rss {_fmt_bytes(node.get('rss'))}{extra}"
        )
        children = sorted(kids.get(key, []), key=lambda k: (nodes[k]["name"], k))
        child_prefix = prefix if top else prefix + ("   " if last else "│  ")
        for i, child in enumerate(children):
            walk(child, child_prefix, i == len(children) - 1, False)

    for top in sorted(kids.get(None, []), key=lambda k: (nodes[k]["name"], k)):
        walk(top, "", True, True)
    debug = tree.get("debug") or {}
    if debug.get("holder"):
        lines.append(f"debugger: held by {debug['holder']}, waiting: {', '.join(debug['waiting']) or 'none'}")
    if debug.get("parked"):
        lines.append(f"parked in their debugger: {', '.join(debug['parked'])}")
    return "\n".join(lines)


__all__ = [
    "DEFAULT_INTERVAL",
    "TreeWatch",
    "activity_of",
    "apply_delta",
    "describe_actor",
    "diff",
    "format_tree",
    "hide_calls",
    "key_of",
    "open_tree_watch",
    "record_output",
    "set_activity",
    "set_debug_lock",
    "set_debug_parked",
    "set_state",
]
