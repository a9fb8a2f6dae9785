"""Loading and unloading the extension: ``%load_ext`` / ``%unload_ext`` / ``%reload_ext``."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from IPython.core.error import UsageError

from . import _guest, _session
from ._magics import NOT_A_KERNEL, ActorMagics
from ._session import transform_actor_cells


def load(shell: Any) -> None:
    """``%load_ext notebook_actors``: start the root actor in this kernel, add the magics."""
    shell.register_magics(ActorMagics)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        print(NOT_A_KERNEL, file=sys.stderr)
        return
    try:
        _guest.start(loop)
    except _guest.RuntimeNotRunning as exc:
        raise UsageError(str(exc)) from None
    if transform_actor_cells not in shell.input_transformers_cleanup:
        shell.input_transformers_cleanup.insert(0, transform_actor_cells)
    session = _session.current()
    session.hook_run_code()
    from . import _debugger

    _debugger.install()
    _register_widget_actions()
    _hook_kernel_shutdown(shell)


def _detach(session: _session.Session) -> None:
    shell = session.shell
    if transform_actor_cells in shell.input_transformers_cleanup:
        shell.input_transformers_cleanup.remove(transform_actor_cells)
    session.unhook_run_code()
    from . import _debugger

    _debugger.uninstall()


def unload_sync(shell: Any) -> None:
    """``unload_ipython_extension``: detach and start stopping the tree (no wait)."""
    _detach(_session.current())
    _guest.stop_soon()


async def unload(session: _session.Session, keep_loaded: bool = False, reload: bool = False) -> None:
    """``%unload_ext notebook_actors`` / ``%actor stop`` / ``%reload_ext notebook_actors``:
    stop the tree and wait until every actor process is gone.

    This runs inside trio, whose run must end first: it only asks for the stop, and the
    session waits for it from asyncio once the cell's trio part has returned.
    """
    session.shell.extension_manager.loaded.discard("notebook_actors")  # so %load_ext works again
    if not keep_loaded:
        _detach(session)
    session.stop_after_cell(_guest.stop_soon(), reload=reload)


def _register_widget_actions() -> None:
    """The tree widget's buttons on notebook actors: restart respawns one, like `%actor
    restart`; cancel and kill also tell a cell running in it who ended it."""
    try:
        from notebook_actors.widgets import default_action, register_action
    except ImportError:  # the widget's optional dependencies are missing
        return
    register_action("restart", _restart_from_widget)
    for action, why in _ENDED_BY_WIDGET.items():
        register_action(action, _noting_who_ended_it(default_action(action), why))


#: What a cell running in an actor says when a widget button ended that actor.
_ENDED_BY_WIDGET = {
    "cancel": "was cancelled by you (the tree's cancel button)",
    "kill": "was killed (SIGKILL) by you (the tree's kill button)",
}


def _path_of(node: dict[str, Any]) -> str | None:
    """The notebook path of the actor of a tree node (None: not a %%actor actor)."""
    actors = _session.current().actors
    uid = tuple(node.get("uid") or ())
    path = next((p for p, h in actors.handles.items() if h.uid == uid), None)
    if path is None:
        path = next((p for p, h in actors.handles.items() if h.pid and h.pid == node.get("pid")), None)
    return path


def _noting_who_ended_it(handler: Any, why: str) -> Any:
    async def noting(node: dict[str, Any]) -> Any:
        path = _path_of(node)
        handle = _session.current().actors.handles.get(path) if path is not None else None
        if handle is not None:
            handle.stopped_by = why
        try:
            return await handler(node)
        except BaseException:
            if handle is not None:
                handle.stopped_by = None
            raise

    return noting


async def _restart_from_widget(node: dict[str, Any]) -> str:
    actors = _session.current().actors
    path = _path_of(node)
    if path is None:
        raise RuntimeError(f"{node.get('name')!r} was not started by a %%actor cell: only those can be restarted here")
    await actors.ensure(path, actors.handles[path].opts, new=True)
    return f"restarted actor {path} (a fresh process and namespace)"


def _hook_kernel_shutdown(shell: Any) -> None:
    """Stop the tree (and wait for it) before ipykernel handles a shutdown request."""
    kernel = getattr(shell, "kernel", None)
    if kernel is None:
        return
    for table in ("shell_handlers", "control_handlers"):
        handlers = getattr(kernel, table, None)
        if not handlers or "shutdown_request" not in handlers:
            continue
        original = handlers["shutdown_request"]
        if getattr(original, "_notebook_actors", False):
            continue

        async def shutdown_request(*args: Any, _original: Any = original) -> Any:
            rt = _guest.current()
            if rt is not None:
                try:
                    if asyncio.get_running_loop() is rt.loop:
                        await rt.stop()
                    else:  # ipykernel's control thread has a loop of its own
                        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(rt.stop(), rt.loop))
                except Exception as exc:  # never block the shutdown itself
                    print(f"[notebook_actors] stopping the actor tree failed: {exc!r}", file=sys.__stderr__)
            return await _original(*args)

        shutdown_request._notebook_actors = True  # type: ignore[attr-defined]
        handlers["shutdown_request"] = shutdown_request
