"""Actor nurseries: spawn children, supervise them one-cancels-all, reap every one.

Each child gets a supervisor task that starts its process, watches it, and in a
shielded ``finally`` makes sure it is gone: a cancel request, then (after a grace
period) SIGTERM, then SIGKILL. A child's error (a ``run_in_actor`` failure or an
unexpected death) cancels the nursery's body and the other children, and is raised
from the ``async with`` block: one error as itself, several as a MultiError.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from . import _hooks, _spawn, _state
from ._channel import Channel
from ._exceptions import (
    ActorCrashed,
    ContextCancelled,
    RemoteActorError,
    TransportClosed,
    box_error,
    group_or_single,
)
from ._launch import launcher_for
from ._portal import Portal, func_ref
from ._process import ChildProcess
from ._root import open_root_actor
from .log import level_number
from .msg import ActorConfig, SpawnSpec

log = logging.getLogger("notebook_actors.supervise")

#: Seconds a child gets to exit after a cancel request before SIGTERM.
CANCEL_GRACE = 3.0
#: Seconds a connected child gets to acknowledge a cancel request; one that does not
#: (blocked in sync code: ``time.sleep``, a C call) is sent SIGTERM then, not after the
#: whole grace, so a tree with a blocked grandchild comes down promptly (as tractor's).
CANCEL_ACK_GRACE = 0.5
#: Seconds a child gets to connect back after its process started.
SPAWN_TIMEOUT = 60.0
#: Seconds to wait for an exited child's channel to deliver its last messages.
DRAIN_TIMEOUT = 2.0
#: Seconds a call whose channel closed waits for the actor's exit status (it is
#: reaped within milliseconds of its death; the bound only guards a stuck reap).
EXIT_STATUS_WAIT = 5.0
#: how many exited children an actor remembers for late crash reports
EXITED_KEPT = 64


class _Child:
    """The parent's record of one child actor."""

    def __init__(self, uid: tuple[str, str], chan: Channel, portal: Portal) -> None:
        self.uid = uid
        self.chan = chan
        self.portal = portal
        self.proc: ChildProcess | None = None
        self.started = trio.Event()
        self.exited = trio.Event()
        self.exitcode: int | None = None
        self.cancel_requested = False
        self.cancel_call: Any = None  # the cancel request in flight; it ends with the ack
        #: its channel closed before its run_in_actor function returned
        self.lost_result = False
        self.hard_kill = False
        self.is_main = False
        self.wait_scope: trio.CancelScope | None = None
        self.collected = trio.Event()  # the run_in_actor result (or error) is in
        self.state = "spawning"
        #: starts it on another machine (``_launch``); None: here
        self.launcher: Any = None
        #: why it could not start (it said so, then ended): what its calls and the
        #: nursery raise
        self.start_error: RemoteActorError | None = None

    def failed_to_start(self, exc: RemoteActorError) -> None:
        """The child reports it cannot start (an ``enable_modules`` entry failed to import)."""
        self.start_error = exc

    async def crash_report(self, actor: Any, during: str) -> RemoteActorError | None:
        """The crash behind a closed channel, with its exit code or signal: waits (a
        bound, EXIT_STATUS_WAIT) for the process to be reaped. None when it exited
        cleanly or as asked (then the closed channel is the whole story), and for a
        run_in_actor child, whose lost result the supervisor reports itself."""
        if self.is_main:
            return None
        with trio.move_on_after(EXIT_STATUS_WAIT):
            await self.exited.wait()
        if self.start_error is not None:
            return self.start_error
        code = self.exitcode
        if code is None or code == 0:
            return None
        if code < 0 and self.asked_to_stop and not _killed_by_someone_else(self):
            return None  # the signal we sent to end it
        return _crashed(self, actor, during=during)

    @property
    def asked_to_stop(self) -> bool:
        """Its end was asked for (by the nursery or ``portal.cancel_actor()``), so its
        cancellation and exit are not failures."""
        return self.cancel_requested or self.portal.cancel_requested

    def request_cancel(self, hard: bool = False) -> None:
        """Ask the child to stop; the supervisor escalates if it does not."""
        self.cancel_requested = True
        self.hard_kill = self.hard_kill or hard
        if hard and self.proc is not None:
            self.proc.kill()
        elif not self.chan.closed and self.cancel_call is None:
            try:
                self.cancel_call = self.portal.request_cancel_nowait()
            except TransportClosed:
                pass
        self._wake()

    def _wake(self) -> None:
        if self.wait_scope is not None:
            self.wait_scope.cancel()


class ActorNursery:
    """Spawns and supervises child actors. Get one from :func:`open_nursery`."""

    def __init__(
        self, actor: Any, supervisor_n: trio.Nursery, errors: list[BaseException], start_method: str | None
    ) -> None:
        self._actor = actor
        self._sup_n = supervisor_n
        self._errors = errors
        self._start_method = start_method
        #: seconds a child gets to exit after a cancel request, then SIGTERM; as long
        #: again after SIGTERM, then SIGKILL
        self.cancel_grace = CANCEL_GRACE
        #: the children not yet reaped when the block ended (emptied then, as tractor's)
        self._children: dict[tuple[str, str], _Child] = {}
        self._exitcodes: dict[tuple[str, str], int | None] = {}
        self._body_scope = trio.CancelScope()
        self.cancelled = False

    def __repr__(self) -> str:
        return f"<ActorNursery of {self._actor.uid} with {len(self._children)} children>"

    @property
    def children(self) -> dict[tuple[str, str], Portal]:
        """``{uid: portal}`` of the children that have not exited yet."""
        return {uid: c.portal for uid, c in self._children.items() if c.state != "exited"}

    @property
    def exitcodes(self) -> dict[tuple[str, str], int | None]:
        """``{uid: exit code}`` of every child this nursery started that has exited
        (negative: killed by that signal); kept after the block ends."""
        return dict(self._exitcodes)

    async def start_actor(
        self,
        name: str,
        *,
        enable_modules: Any = None,
        rpc_module_paths: Any = None,
        loglevel: str | None = None,
        debug_mode: bool | None = None,
        infect_asyncio: bool = False,
        bind_addr: Any = None,
        start_method: str | None = None,
        host: Any = None,
        launcher: Any = None,
        typed_only: bool = False,
    ) -> Portal:
        """Spawn a daemon actor that serves RPC until cancelled; return its portal.

        Returns as soon as the process is started: calls through the portal are queued
        until the child connects back, so spawning many actors overlaps their start-up.

        ``host`` starts it on another machine: an SSH destination (``"user@gpu1"``)
        or a launcher (``SSHLauncher(...)``, ``SlurmLauncher(...)``); ``launcher="slurm"``
        is a default ``SlurmLauncher()``; see docs/distribution.md. Raises ``LaunchError`` if it cannot be started there.

        ``typed_only=True``: the actor refuses pickled values on every call, result and
        stream, both ways (only what msgpack carries natively travels; docs/data.md).
        """
        modules = list(enable_modules or []) + list(rpc_module_paths or [])
        child = await self._spawn(
            name,
            modules,
            loglevel,
            debug_mode,
            infect_asyncio,
            bind_addr,
            start_method,
            launcher=launcher_for(host, launcher),
            typed_only=typed_only,
        )
        return child.portal

    async def run_in_actor(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        enable_modules: Any = None,
        rpc_module_paths: Any = None,
        loglevel: str | None = None,
        debug_mode: bool | None = None,
        infect_asyncio: bool = False,
        start_method: str | None = None,
        host: Any = None,
        launcher: Any = None,
        typed_only: bool = False,
        **fn_kwargs: Any,
    ) -> Portal:
        """Spawn an actor that runs ``fn(**fn_kwargs)`` once, then exits.

        The result is waited for when the nursery block ends (or get it earlier with
        ``await portal.result()``); an error cancels the nursery.
        """
        ns, _, code = func_ref(fn)
        modules = list(enable_modules or []) + list(rpc_module_paths or [])
        if code is None:
            modules.append(ns)
        child = await self._spawn(
            name or str(getattr(fn, "__name__", "actor")),
            modules,
            loglevel,
            debug_mode,
            infect_asyncio,
            None,
            start_method,
            main=(fn, fn_kwargs),
            launcher=launcher_for(host, launcher),
            typed_only=typed_only,
        )
        return child.portal

    async def _spawn(
        self,
        name: str,
        modules: list[str],
        loglevel: str | None,
        debug_mode: bool | None,
        infect_asyncio: bool,
        bind_addr: Any,
        start_method: str | None,
        main: tuple[Callable[..., Any], dict[str, Any]] | None = None,
        launcher: Any = None,
        typed_only: bool = False,
    ) -> _Child:
        actor = self._actor
        if actor.cancel_called or self.cancelled:
            raise SpawnRefused(f"actor nursery of {actor.uid} is cancelled: cannot spawn {name!r}")
        if launcher is None:  # same host, same sys.path: a module that cannot load fails here, now
            check_importable(modules)
        if loglevel is not None:
            level_number(loglevel)  # an unknown level is the caller's error, not a child crash
        import uuid

        from . import _transport

        uid = (name, uuid.uuid4().hex)
        chan = Channel(dialer=False, uid=uid)
        portal = Portal(chan, actor)
        child = _Child(uid, chan, portal)
        main_mod = sys.modules.get("__main__")
        mine = actor.config
        config = ActorConfig(
            name=name,
            uid=uid[1],
            enable_modules=sorted(set(modules)),
            loglevel=loglevel or mine.loglevel,
            debug_mode=mine.debug_mode if debug_mode is None else debug_mode,
            registry_addrs=[actor.addr] if actor.is_arbiter else mine.registry_addrs,
            parent_addr=actor.addr,
            parent_main_path=getattr(main_mod, "__file__", None)
            if mine.parent_main_path is None
            else mine.parent_main_path,
            parent_main_module=_main_module_name(main_mod) if mine.parent_addr is None else mine.parent_main_module,
            bind_addr=_transport.normalize_addr(bind_addr) if bind_addr else None,
            infect_asyncio=infect_asyncio,
            # the child's own children start the same way, unless its nursery says otherwise
            start_method=start_method or self._start_method or mine.start_method or _spawn.default_start_method(),
            typed_only=typed_only,
            # a tree whose registry is on loopback TCP: listen there too (on this host)
            tcp_bind=actor.tcp_bind if launcher is None else None,
        )
        boot = SpawnSpec(
            config=config,
            secret=actor.secret,
            sys_path=list(sys.path),
            # actors started on a far machine dial the tree through the same routes
            routes=_transport.current_routes(),
            host=launcher.host if launcher is not None else None,
        )
        child.launcher = launcher
        actor.expect_child(uid, chan)
        if main is not None:
            child.is_main = True
            portal.start_main(*main)
        self._children[uid] = child
        actor.children[uid] = child
        await self._sup_n.start(self._supervise, child, boot)
        return child

    async def _supervise(self, child: _Child, boot: SpawnSpec, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        try:
            child.proc = await _spawn.start_process(boot, child.launcher)
        except BaseException:
            # no process: the error goes to whoever called start_actor/run_in_actor
            await self._reap(child)
            raise
        child.state = "running"
        task_status.started()
        try:
            async with trio.open_nursery() as n:
                n.start_soon(self._watch_connect, child)
                if child.is_main:
                    n.start_soon(self._collect_main_result, child)
                # a cancel request wakes us from here (`_Child._wake`) so that `_reap`
                # can escalate if the child does not exit by itself
                with trio.CancelScope() as child.wait_scope:
                    if child.cancel_requested:
                        child.wait_scope.cancel()
                    child.exitcode = await child.proc.wait()
                # reap while the result collector still listens: the child's last
                # messages (its result or error) arrive before its channel's EOF
                await self._reap(child)
                n.cancel_scope.cancel()
        finally:
            await self._reap(child)

    async def _watch_connect(self, child: _Child) -> None:
        with trio.move_on_after(SPAWN_TIMEOUT):
            await child.chan.wait_attached()
            child.started.set()
            return
        pid = child.proc.pid if child.proc else "?"
        why = f"actor {child.uid} (pid {pid}) did not connect back within {SPAWN_TIMEOUT}s: killed it"
        log.error("%s", why)
        child.request_cancel(hard=True)
        self._child_failed(
            child, trio.TooSlowError(f"{why}; is the machine overloaded, or the child stuck at start-up?")
        )

    async def _collect_main_result(self, child: _Child) -> None:
        try:
            await self._await_main_result(child)
        finally:
            child.collected.set()

    async def _await_main_result(self, child: _Child) -> None:
        try:
            await child.portal.result()
        except trio.Cancelled:
            raise
        except TransportClosed:
            # the process died (or is dying): `_reap` reports it with its exit code
            child.lost_result = True
            return
        except BaseException as exc:
            if not (child.asked_to_stop and isinstance(exc, ContextCancelled)):
                self._child_failed(child, exc)
            return
        child.request_cancel()

    def _child_failed(self, child: _Child, exc: BaseException) -> None:
        if not any(e is exc for e in self._errors):
            self._errors.append(exc)
        self._cancel_all_soon()

    def _cancel_all_soon(self, hard: bool = False, cancel_body: bool = True) -> None:
        self.cancelled = True
        if cancel_body:
            self._body_scope.cancel()
        for c in self._children.values():
            if c.exitcode is None:
                c.request_cancel(hard=hard)

    async def _reap(self, child: _Child) -> None:
        """Make sure the child process is gone and accounted for (shielded, idempotent)."""
        actor = self._actor
        if child.state == "exited":
            return
        with trio.CancelScope(shield=True):
            if child.proc is not None and child.proc.returncode is None:
                if not child.cancel_requested:
                    child.request_cancel()
                await _hooks.stopping_child(child.uid)  # e.g. its subtree is in the REPL
                if child.hard_kill:
                    child.proc.kill()
                elif not await self._acknowledged(child):
                    child.proc.terminate()
                await _spawn.reap(child.proc, self.cancel_grace)
            child.exitcode = child.proc.returncode if child.proc is not None else child.exitcode
            if child.proc is not None and getattr(child.proc, "leads_group", False):
                _spawn.kill_group(child.proc)
            # only now: a child still starting up connects to this very channel, where
            # its cancel request waits for it
            actor.forget_child_start(child.uid)
            await self._drain_channel(child)
            died = child.exitcode not in (0, None) or child.lost_result
            if child.start_error is not None:
                self._child_failed(child, child.start_error)
            elif died and (not child.asked_to_stop or _killed_by_someone_else(child)):
                self._child_failed(child, _crashed(child, actor))
            child.state = "exited"
            self._exitcodes[child.uid] = child.exitcode
            child.exited.set()
            _hooks.child_exited(actor, child)  # e.g. the tree shows how it ended
            actor.children.pop(child.uid, None)
            actor.exited_children[child.uid] = child
            while len(actor.exited_children) > EXITED_KEPT:
                actor.exited_children.popitem(last=False)
            if actor.is_arbiter:
                actor.registry.unregister(child.uid)

    async def _acknowledged(self, child: _Child) -> bool:
        """Whether to give the child the whole grace: it took its cancel request (or
        exited) within ``CANCEL_ACK_GRACE``, or it did not but is busy on the CPU
        (booting, computing), so it may yet see the request. A silent child that used
        no CPU meanwhile is blocked (``time.sleep``, a lock, a C call): it cannot see
        the request, so waiting the grace out only delays its parent's own exit.
        Only a connected child on this host is judged: one still starting cannot
        answer yet, one on another host answers over a slower link."""
        proc = child.proc
        if proc is None or child.cancel_call is None or child.launcher is not None or not child.chan.connected():
            return True
        cpu_before = _cpu_seconds(proc.pid)
        wait = min(self.cancel_grace, CANCEL_ACK_GRACE)
        with trio.move_on_after(wait):
            async with trio.open_nursery() as race:  # an exit counts as an answer too

                async def exited() -> None:
                    await proc.wait()
                    race.cancel_scope.cancel()

                race.start_soon(exited)
                await child.portal.wait_cancel_acknowledged(child.cancel_call)
                race.cancel_scope.cancel()
            return True
        cpu_after = _cpu_seconds(proc.pid)
        if cpu_before is None or cpu_after is None or cpu_after > cpu_before:
            return True
        if not child.chan.connected() or _runnable_or_ended(proc.pid):
            # starved of a CPU on a busy machine, or it has ended and this busy parent
            # has not yet read its last message or reaped it: not blocked
            return True
        log.warning(
            "actor %s neither acknowledged its cancel request within %ss nor ran meanwhile "
            "(blocked in sync code?): sending SIGTERM",
            child.uid,
            wait,
        )
        return False

    async def _drain_channel(self, child: _Child) -> None:
        """After the process exit: let its last messages in, then close its channel and
        wake whoever still waits on it; a run_in_actor result is collected by then."""
        chan = child.chan
        if chan.connected():
            with trio.move_on_after(DRAIN_TIMEOUT):
                await chan.wait_closed()  # the EOF follows the last message
        chan.mark_closed(None)
        for call in list(chan.calls.values()):
            call.wake()  # an unattached channel has nobody else to wake them
        if child.is_main and child.proc is not None:
            with trio.move_on_after(DRAIN_TIMEOUT):
                await child.collected.wait()

    async def cancel(self, hard_kill: bool = False) -> None:
        """Cancel every child (cancel request → SIGTERM → SIGKILL) and wait until all
        have exited.

        The nursery's body is not cancelled: code after ``await n.cancel()`` runs (a
        child's *failure* does cancel the body). ``hard_kill=True`` skips the request
        and SIGKILLs at once.
        """
        self._cancel_all_soon(hard=hard_kill, cancel_body=False)
        with trio.CancelScope(shield=True):
            for child in list(self._children.values()):
                await child.exited.wait()


def _ignore_root_kwargs(actor: Any, root_kwargs: dict[str, Any]) -> None:
    """Root options given to a nested ``open_nursery`` are ignored, as tractor does
    (its scripts pass ``arbiter_addr=``/``registry_addrs=`` everywhere); a name that is
    no root option at all is still a TypeError."""
    import inspect

    known = inspect.signature(open_root_actor).parameters
    unknown = [k for k in root_kwargs if k not in known]
    if unknown:
        raise TypeError(
            f"open_nursery() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
            f"it takes start_method, cancel_grace and the options of open_root_actor"
        )
    log.info(
        "open_nursery(%s=...) ignored: actor %s already runs its root options",
        "=..., ".join(root_kwargs),
        actor.uid,
    )


def check_importable(modules: list[str]) -> None:
    """Fail now, in the parent, if a module of ``enable_modules`` cannot be imported:
    raise the error its import would raise (``ModuleNotFoundError``, ``SyntaxError``).

    Only finds and compiles the module, never runs it; modules already imported here,
    and the script itself, are trusted.
    """
    import importlib.util

    for name in modules:
        if name in sys.modules or name in ("__main__", "__mp_main__"):
            continue
        spec = importlib.util.find_spec(name)  # raises ModuleNotFoundError for a missing parent package
        if spec is None:
            raise ModuleNotFoundError(
                f"No module named {name!r} (from enable_modules): the actor could not import it; "
                "check the name and that it is on sys.path",
                name=name,
            )
        get_code = getattr(spec.loader, "get_code", None)
        if get_code is not None:
            get_code(name)  # compiles: a SyntaxError surfaces here, nothing is executed


def _cpu_seconds(pid: int) -> float | None:
    """CPU time ``pid``'s main thread (the one that runs trio) used so far, or None
    if it cannot be read. In nanoseconds from ``/proc/PID/schedstat`` where there is
    one: user + system time counts clock ticks (10 ms), and a child that woke for a
    millisecond to take its cancel request would look as if it had not run."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        pass
    import psutil

    try:
        times = psutil.Process(pid).cpu_times()
    except (psutil.Error, OSError):
        return None
    seconds: float = times.user + times.system
    return seconds


def _runnable_or_ended(pid: int) -> bool:
    """Whether ``pid`` waits for a CPU (or runs) or has exited (a zombie not yet
    reaped), rather than sleeps; True if unknown."""
    import psutil

    try:
        return psutil.Process(pid).status() in (psutil.STATUS_RUNNING, psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except (psutil.Error, OSError):
        return True


def _main_module_name(main_mod: Any) -> str | None:
    """``pkg.mod`` when the program was started as ``python -m pkg.mod``, else None."""
    return getattr(getattr(main_mod, "__spec__", None), "name", None) or None


def _crashed(child: _Child, actor: Any, during: str | None = None) -> ActorCrashed:
    import signal as _signal

    code = child.exitcode
    if code is None or code >= 0:
        why = f"exit code {code}"
    else:
        why = f"signal {_signal.Signals(-code).name}"
    if child.lost_result:
        why += ", before its function returned (it was started by run_in_actor)"
    pid = child.proc.pid if child.proc else "?"
    if during is not None:  # seen first by a call whose channel closed
        text = f"{child.uid[0]!r} (pid {pid}) exited with {why} during {during}"
        exc = RuntimeError(text)
    else:
        exc = RuntimeError(f"actor {child.uid} (pid {pid}) died unexpectedly: {why}")
    info = box_error(exc, child.uid, exitcode=code)
    info.type_name, info.type_module, info.tb_str = "ActorCrashed", "notebook_actors._exceptions", ""
    info.relay_path = [child.uid, actor.uid]
    return ActorCrashed(info)


def _killed_by_someone_else(child: _Child) -> bool:
    """Died of a signal this parent never sent (SIGKILL from outside, a segfault):
    a crash even when the child had been asked to stop."""
    code, proc = child.exitcode, child.proc
    return code is not None and code < 0 and proc is not None and -code not in proc.signals_sent


class SpawnRefused(trio.ClosedResourceError):
    """Raised by ``start_actor``/``run_in_actor`` on a nursery that is already being
    cancelled (by you, or because a child failed). When a child's failure is the
    reason, the nursery reports that failure, not this echo of it."""


def _caused_by_crash(body_exc: BaseException, errors: list[BaseException]) -> bool:
    """A body call that failed with TransportClosed because its actor crashed: the
    ActorCrashed already says it (racing the body's cancellation, it would otherwise
    sometimes come as a MultiError of both, sometimes as the crash alone)."""
    if not isinstance(body_exc, TransportClosed):
        return False
    text = str(body_exc)
    return any(isinstance(e, ActorCrashed) and e.src_uid and repr(e.src_uid) in text for e in errors)


def _adopt_own_crash_report(body_exc: BaseException, errors: list[BaseException]) -> bool:
    """A body call that raised the ActorCrashed of a child the nursery also saw
    crash: one report of it, the call's (it names the call that was running), in
    the supervisor's place; True if so."""
    if not isinstance(body_exc, ActorCrashed) or body_exc.src_uid is None:
        return False
    for i, e in enumerate(errors):
        if isinstance(e, ActorCrashed) and e.src_uid == body_exc.src_uid:
            errors[i] = body_exc
            return True
    return False


@asynccontextmanager
async def _open_actor_nursery(
    actor: Any, start_method: str | None, cancel_grace: float | None = None
) -> AsyncIterator[ActorNursery]:
    errors: list[BaseException] = []
    body_exc: BaseException | None = None
    async with trio.open_nursery() as sup_n:
        an = ActorNursery(actor, sup_n, errors, start_method)
        if cancel_grace is not None:
            an.cancel_grace = cancel_grace
        try:
            with an._body_scope:
                yield an
        except BaseException as exc:
            body_exc = exc
            an._cancel_all_soon()
    an._children.clear()  # every child is reaped by now (tractor programs check it)
    if body_exc is not None:
        if errors and not isinstance(body_exc, trio.Cancelled):
            explained = (
                any(e is body_exc for e in errors)
                or _caused_by_crash(body_exc, errors)
                or _adopt_own_crash_report(body_exc, errors)
                or isinstance(body_exc, SpawnRefused)  # an echo of the failure that cancelled us
            )
            extra = [] if explained else [body_exc]
            raise group_or_single([*errors, *extra], "actor nursery failed") from None
        raise body_exc
    if errors:
        raise group_or_single(errors, f"{len(errors)} actors failed") from None


def open_nursery(*, start_method: str | None = None, cancel_grace: float | None = None, **root_kwargs: Any) -> Any:
    """Open an actor nursery: an async context manager yielding an ActorNursery.

    Outside any runtime it first starts the root actor (``root_kwargs`` go to
    :func:`open_root_actor`). The block waits for every child: ``run_in_actor`` ones
    finish on their own, ``start_actor`` daemons must be cancelled
    (``portal.cancel_actor()`` or ``nursery.cancel()``).

    Args:
        start_method: spawn backend for this nursery's children (default: the root's,
            else :func:`try_set_start_method`'s, else ``'trio'``).
        cancel_grace: seconds a cancelled child gets to exit before SIGTERM, and again
            before SIGKILL (default 3). A child stuck in a blocking call (``time.sleep``,
            a C extension) cannot see a cancel request: only the signals end it.

    Raises:
        RuntimeError: used as a plain ``with`` instead of ``async with``.
    """
    return _AsyncOnly(_open_nursery(start_method, cancel_grace, root_kwargs), "open_nursery()")


class _AsyncOnly:
    """An async context manager that says how to use it when misused with ``with``."""

    def __init__(self, acm: Any, what: str) -> None:
        self._acm, self._what = acm, what

    async def __aenter__(self) -> Any:
        return await self._acm.__aenter__()

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._acm.__aexit__(*exc)

    def __enter__(self) -> Any:
        raise RuntimeError(f"{self._what} is an async context manager: use `async with {self._what} as n:`, not `with`")

    def __exit__(self, *exc: Any) -> None:  # pragma: no cover - __enter__ always raises
        pass


@asynccontextmanager
async def _open_nursery(
    start_method: str | None, cancel_grace: float | None, root_kwargs: dict[str, Any]
) -> AsyncIterator[ActorNursery]:
    actor = _state.current_actor_or_none()
    if actor is None:
        async with open_root_actor(start_method=start_method, **root_kwargs) as actor:
            async with _open_actor_nursery(actor, start_method, cancel_grace) as an:
                yield an
        return
    if root_kwargs:
        _ignore_root_kwargs(actor, root_kwargs)
    async with _open_actor_nursery(actor, start_method, cancel_grace) as an:
        yield an


__all__ = ["ActorNursery", "open_nursery"]
