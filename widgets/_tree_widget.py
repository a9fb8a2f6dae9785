"""The live actor-tree widget (anywidget: a Python class plus a plain ES module).

The widget does not poll anything itself: a trio task of the actor runtime watches
the tree (:func:`notebook_actors.ext.open_tree_watch`) and copies each change into
the ``tree`` trait, so updates are throttled by the watch's interval and are sent
both while the kernel is idle and while a cell awaits. Traits only ever hold plain
JSON, and are set only from that trio task (the kernel's main thread).

Buttons in the front end send ``{"type": "action", ...}`` messages; they are handled in
trio and answered through the ``last_action`` trait.

The ``beat`` trait ticks every :data:`BEAT_INTERVAL` seconds while the runtime serves
the widget, so a view can tell "nothing changed" from "nobody is there": it shows a
stale state when the beats stop (a blocking cell) and a disconnected state when its
comm goes away (kernel restart or shutdown).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anywidget
import traitlets
import trio

import notebook_actors as na
from notebook_actors import ext

log = logging.getLogger("notebook_actors.widgets")

#: action name -> ``async handler(node: dict) -> str | (str, str)`` (the message shown on
#: success, optionally with a block of text such as a stack dump).
ActionHandler = Callable[[dict[str, Any]], Awaitable["str | tuple[str, str]"]]
_ACTIONS: dict[str, ActionHandler] = {}

#: Seconds an action gets before the widget reports that it timed out.
ACTION_TIMEOUT = 5.0
#: ... except these, which wait for something slower (a stack dump has its own guard).
_ACTION_TIMEOUTS = {"stack": 15.0}
#: Seconds between two heartbeats to the front end.
BEAT_INTERVAL = 2.0
#: Actions that make sense on an actor that has already ended.
_AFTER_THE_END = frozenset({"debug", "restart"})


def register_action(name: str, handler: ActionHandler) -> None:
    """Handle the front end's ``name`` button (e.g. ``"debug"`` for the notebook
    debugger, ``"restart"`` for a supervisor that can respawn actors).

    ``handler(node)`` runs in trio in the root actor; ``node`` is the actor's tree node
    (a dict, see :mod:`notebook_actors.ext`). Return a short message for the user, or
    ``(message, text)`` to also show a block of text under the actor's row (a stack
    dump); raise to report a failure (the exception text is shown).
    """
    _ACTIONS[name] = handler


class ActorTreeWidget(anywidget.AnyWidget):
    """A live view of the actor tree: states, resources, streams, and buttons.

    Create it in the root actor's process (a kernel with ``%load_ext notebook_actors``,
    or any trio program running the runtime, e.g. through
    ``notebook_actors.to_asyncio.start_guest_actor``). Display it as often as you like:
    every view shows the same model. ``close()`` stops its updates.

    The trap: it needs the trio run to make progress. A blocking cell (``time.sleep``)
    freezes it together with the rest of the runtime; ``await trio.sleep`` (or an
    ``%%actor`` cell) does not.

    Raises:
        RuntimeError: no actor runtime runs in this process.
    """

    _esm = Path(__file__).parent / "tree.js"
    _css = Path(__file__).parent / "tree.css"

    tree = traitlets.Dict().tag(sync=True)
    status = traitlets.Dict().tag(sync=True)
    last_action = traitlets.Dict().tag(sync=True)
    beat = traitlets.Int(0).tag(sync=True)

    def __init__(self, interval: float = ext.DEFAULT_INTERVAL, **kwargs: Any) -> None:
        actor = ext.current_actor_or_none()
        if actor is None:
            raise RuntimeError(
                "ActorTreeWidget needs the actor runtime in this process: run `%load_ext notebook_actors` "
                "first (or start one with notebook_actors.to_asyncio.start_guest_actor())"
            )
        try:
            token = trio.lowlevel.current_trio_token()
        except RuntimeError:
            raise RuntimeError(
                "ActorTreeWidget must be created on the thread that runs the actor runtime's trio "
                "(the kernel's main thread, where %load_ext notebook_actors started it)"
            ) from None
        super().__init__(**kwargs)
        self._actor = actor
        self._token = token
        self._interval = interval
        self._hub: _Hub | None = None
        self._updates = 0
        self._update_seconds = 0.0
        self._closed = False
        self.status = {
            "live": True,
            "interval": interval,
            "beat_interval": BEAT_INTERVAL,
            "actions": sorted(_ACTIONS),  # the buttons to show
            "root": ext.key_of(actor.uid),
        }
        self.on_msg(self._on_frontend_msg)
        token.run_sync_soon(self._start_in_trio)

    # -- the trio side ---------------------------------------------------------------------
    def _start_in_trio(self) -> None:
        if self._closed:
            return
        try:
            self._hub = _Hub.join(self._actor, self._interval, self)
        except RuntimeError as exc:
            self._set_stopped(str(exc))

    def _publish(self, snapshot: dict[str, Any]) -> None:
        if self._closed or self.comm is None:
            return
        t0 = time.perf_counter()
        self.tree = snapshot
        self._update_seconds += time.perf_counter() - t0
        self._updates += 1

    def _beat(self) -> None:
        if not self._closed and self.comm is not None:
            self.beat += 1

    def _set_stopped(self, why: str) -> None:
        if self.comm is not None and not self._closed:
            self.status = {**self.status, "live": False, "why": why}

    def statistics(self) -> dict[str, Any]:
        """Kernel-side cost so far: updates sent and seconds spent sending them."""
        return {
            "updates": self._updates,
            "seconds": self._update_seconds,
            "per_update_ms": 1000 * self._update_seconds / max(1, self._updates),
            "actors": len(self.tree.get("nodes", {})),
        }

    def close(self) -> None:
        """Stop the updates and close every view of this widget."""
        self._closed = True
        try:
            self._token.run_sync_soon(self._leave_hub)
        except trio.RunFinishedError:
            pass
        super().close()

    def _leave_hub(self) -> None:
        if self._hub is not None:
            self._hub.leave(self)

    # -- actions -------------------------------------------------------------------------
    def _on_frontend_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict) or content.get("type") != "action":
            return
        try:
            self._token.run_sync_soon(self._start_action, content)
        except trio.RunFinishedError:
            self.last_action = _answer(content, False, "the actor runtime has stopped")

    def _start_action(self, content: dict[str, Any]) -> None:
        if self._hub is None or self._hub.nursery is None:
            self.last_action = _answer(content, False, "the tree widget is not running")
            return
        self._hub.nursery.start_soon(self._do_action, content)

    async def _do_action(self, content: dict[str, Any]) -> None:
        self.last_action = await run_action(self._actor, self.tree, content)


class _Hub:
    """One tree watch per interval, shared by every widget of this process: two widgets
    show the very same snapshots, and the tree feeds run once."""

    _hubs: dict[float, _Hub] = {}

    def __init__(self, actor: Any, interval: float) -> None:
        self.actor = actor
        self.interval = interval
        self.widgets: set[ActorTreeWidget] = set()
        self.scope = trio.CancelScope()
        self.nursery: trio.Nursery | None = None
        self.snapshot: dict[str, Any] | None = None

    @classmethod
    def join(cls, actor: Any, interval: float, widget: ActorTreeWidget) -> _Hub:
        """Add ``widget`` to the running hub for ``interval`` (start one if needed)."""
        hub = cls._hubs.get(interval)
        if hub is None or hub.actor is not actor or hub.scope.cancel_called:
            hub = _Hub(actor, interval)
            # a service of the root: the runtime's shutdown cancels it first, before it
            # closes channels, and it never holds up the user's own nurseries
            actor.start_service(hub.run)  # RuntimeError when the runtime is shutting down
            cls._hubs[interval] = hub
        hub.widgets.add(widget)
        if hub.snapshot is not None:
            widget._publish(hub.snapshot)
        return hub

    def leave(self, widget: ActorTreeWidget) -> None:
        self.widgets.discard(widget)
        if not self.widgets:
            self.scope.cancel()

    async def run(self) -> None:
        why = "the actor runtime stopped"
        try:
            with self.scope:
                async with trio.open_nursery() as nursery:
                    self.nursery = nursery
                    nursery.start_soon(self._beat)
                    async with ext.open_tree_watch(self.interval) as watch:
                        self.publish(watch.snapshot())
                        async for _ in watch:
                            self.publish(watch.snapshot())
        except Exception as exc:  # never take the runtime down with us
            log.exception("the actor tree widget stopped")
            why = f"stopped: {type(exc).__name__}: {exc}"
        finally:
            if self._hubs.get(self.interval) is self:
                del self._hubs[self.interval]
            for widget in list(self.widgets):
                widget._set_stopped(why)

    async def _beat(self) -> None:
        while True:
            for widget in list(self.widgets):
                widget._beat()
            await trio.sleep(BEAT_INTERVAL)

    def publish(self, snapshot: dict[str, Any]) -> None:
        self.snapshot = snapshot
        for widget in list(self.widgets):
            widget._publish(snapshot)


def _answer(content: dict[str, Any], ok: bool, message: str, text: str | None = None) -> dict[str, Any]:
    answer = {
        "id": content.get("id"),
        "action": content.get("action"),
        "key": content.get("key"),
        "ok": ok,
        "message": message,
        "at": time.time(),
    }
    if text is not None:
        answer["text"] = text
    return answer


async def run_action(actor: Any, tree: dict[str, Any], content: dict[str, Any]) -> dict[str, Any]:
    """Carry out one button press; the answer says what happened (never raises)."""
    action, key = content.get("action"), content.get("key")
    node = tree.get("nodes", {}).get(key)
    if node is None:
        return _answer(content, False, f"actor {key} is gone: it is no longer in the tree")
    who = f"actor {node['name']} (pid {node['pid']})"
    if node["state"] in ("exited", "crashed") and action not in _AFTER_THE_END:
        return _answer(content, False, f"{who} has already {ext.state_word(node)}")
    handler = _ACTIONS.get(action)
    if handler is None:
        return _answer(content, False, f"no handler for {action!r} is installed")
    timeout = _ACTION_TIMEOUTS.get(action, ACTION_TIMEOUT)
    try:
        with trio.fail_after(timeout):
            result = await handler(node)
    except trio.TooSlowError:
        return _answer(content, False, f"{action} of {who} timed out after {timeout}s")
    except Exception as exc:
        return _answer(content, False, f"{action} of {who} failed: {exc}")
    if isinstance(result, tuple):
        message, text = result
        return _answer(content, True, message, str(text))
    return _answer(content, True, result)


def _refuse_root(node: dict[str, Any], action: str) -> None:
    if node.get("parent") is None:
        raise RuntimeError(
            f"{node['name']} is the root of the tree (this process): {action} it by interrupting "
            "or restarting the kernel instead"
        )


async def _cancel(node: dict[str, Any]) -> str:
    _refuse_root(node, "cancel")
    if not node.get("addr"):
        raise RuntimeError("it has no address yet (still spawning); try again in a moment")
    actor = na.current_actor()
    try:
        chan = await actor.connect_to(node["addr"])
        await na.Portal(chan, actor).run_from_ns("self", "cancel")
    except (OSError, na.TransportClosed) as exc:
        raise RuntimeError(f"it is gone ({exc})") from None
    return f"asked actor {node['name']} to cancel"


async def _kill(node: dict[str, Any]) -> str:
    _refuse_root(node, "kill")
    pid = node.get("pid")
    if not pid:
        raise RuntimeError("it has no process yet")
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        raise RuntimeError(f"process {pid} is gone") from None
    return f"sent SIGKILL to actor {node['name']} (pid {pid}); its parent sees it crash"


async def _restart(node: dict[str, Any]) -> str:
    raise RuntimeError(
        "restarting needs a supervisor that can respawn it, and none is installed "
        "(register one with notebook_actors.widgets.register_action('restart', handler))"
    )


async def _debug(node: dict[str, Any]) -> str:
    raise RuntimeError(
        "no notebook debugger is installed to attach to it "
        "(it registers itself with notebook_actors.widgets.register_action('debug', handler))"
    )


async def _stack(node: dict[str, Any]) -> tuple[str, str]:
    text = await na.dump_stacks(node["key"])
    return f"the stacks of every task and thread of actor {node['name']} are below its row", text


_DEFAULT_ACTIONS: dict[str, ActionHandler] = {
    "cancel": _cancel,
    "kill": _kill,
    "restart": _restart,
    "debug": _debug,
    "stack": _stack,
}
for _name, _handler in _DEFAULT_ACTIONS.items():
    _ACTIONS.setdefault(_name, _handler)


def default_action(name: str) -> ActionHandler:
    """The widget's own handler of the ``name`` button (``"cancel"``, ``"kill"``, ...),
    for a handler registered in its place that adds to it rather than replaces it.

    Raises:
        KeyError: the widget has no handler of its own for ``name``.
    """
    return _DEFAULT_ACTIONS[name]


def tree(interval: float = ext.DEFAULT_INTERVAL) -> ActorTreeWidget:
    """A new live tree widget (its rich repr displays it); for ``%actor tree``."""
    return ActorTreeWidget(interval=interval)
