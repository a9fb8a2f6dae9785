"""Launchers: start an actor on another machine with a tool users already trust.

A launcher runs ``python -m notebook_actors._remote`` somewhere else and joins that
process's stdio to the parent: the boot record and a heartbeat go down, status lines
and the actor's output come back (see ``_remote``). The actor's channel reaches its
parent's Unix socket through a route the launcher sets up (an SSH-forwarded socket;
on one Slurm node the socket itself), so everything above the transport — RPC,
streams, the debugger, the tree — works as with a local child.

- :class:`SSHLauncher`: the OpenSSH client (``~/.ssh/config``, keys, agents and jump
  hosts apply; ``BatchMode``, so it never prompts). The link is SSH's: authenticated
  and encrypted, and no port is opened to the network.
- :class:`SlurmLauncher`: ``srun`` (a job step inside an allocation, or a job of its
  own outside one); ``scancel`` on teardown.

Both implement :class:`Launcher`, the whole interface: a name for where the actor
runs, and ``start(boot) -> ChildProcess``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import uuid
from typing import Any, TypeVar

import trio

from . import _remote
from .log import get_logger
from .msg import encoder

__all__ = ["LaunchError", "Launcher", "SSHLauncher", "SlurmLauncher", "launcher_for"]

log = get_logger(__name__)

#: how long a launcher may take to report the remote actor running
START_TIMEOUT = 15.0
#: seconds between heartbeat lines (``_remote.HEARTBEAT_TIMEOUT`` of silence ends the actor)
HEARTBEAT = 1.0


class LaunchError(RuntimeError):
    """Raised by ``start_actor``/``run_in_actor`` when a launcher could not start the
    actor: the host is unreachable, its key is unknown, authentication was refused,
    or the package or interpreter is missing there. The message names the host and
    the cause."""


class Launcher:
    """Where and how an actor process starts (a subclass is one way, e.g. SSH)."""

    #: where the actor runs, as the tree and error messages name it
    host: str = "localhost"

    async def start(self, boot: Any) -> Any:
        """Start the actor described by ``boot`` (a ``SpawnSpec``); return its
        ``ChildProcess``, once the actor runs. Raises :class:`LaunchError`."""
        raise NotImplementedError

    def forwarding(self, *addrs: str) -> Launcher:
        """This launcher, also making the ``uds:`` addresses ``addrs`` reachable from
        the actor (e.g. the notebook's cell-output socket). A launcher whose actors
        share this machine's sockets (one Slurm node) needs nothing more."""
        return self


def _uds_path(addr: str) -> str | None:
    return addr[len("uds:") :] if addr.startswith("uds:") else None


def _status_of(line: bytes) -> tuple[str, str] | None:
    """``(word, value)`` of a status line from ``_remote``, or None for output."""
    prefix = _remote.STATUS.encode()
    if not line.startswith(prefix):
        return None
    word, _, value = line[len(prefix) :].decode(errors="replace").strip().partition(" ")
    return word, value


class LinkedChild:
    """An actor on another machine, seen through its launcher process's stdio.

    ``pid`` is the local launcher process (``ssh``/``srun``): ending it ends the actor.
    ``returncode`` is the *actor's* (negative for a signal), from its status line;
    a launcher that died without one (a lost link) reports its own exit status.
    """

    def __init__(self, proc: trio.Process, host: str, status: dict[str, str], leftover: bytes) -> None:
        self.pid = proc.pid
        self.remote_pid = int(status["ready"])
        #: what the far end said before it was ready (e.g. its Slurm job and step)
        self.started_as = status
        self.host = host
        self.signals_sent: set[int] = set()
        self._proc = proc
        self._code: int | None = None
        self._done = trio.Event()
        self._lines_to_send, self._lines = trio.open_memory_channel[bytes](16)
        trio.lowlevel.spawn_system_task(self._follow, leftover, name=f"link to {host}")

    @property
    def returncode(self) -> int | None:
        return self._code

    async def wait(self) -> int:
        await self._done.wait()
        assert self._code is not None
        return self._code

    def signal(self, sig: int) -> None:
        if self._code is not None:
            return
        self.signals_sent.add(sig)
        if sig == signal.SIGKILL:  # no waiting on a link: end the launcher, the far end follows
            self._proc.kill()
            return
        try:
            self._lines_to_send.send_nowait(f"signal {int(sig)}\n".encode())
        except (trio.WouldBlock, trio.ClosedResourceError):
            self._proc.kill()

    def terminate(self) -> None:
        self.signal(signal.SIGTERM)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

    async def _follow(self, leftover: bytes) -> None:
        status: tuple[str, str] | None = None
        try:
            async with trio.open_nursery() as n:
                n.start_soon(self._send_heartbeats)
                status = await self._read_output(leftover)
                n.cancel_scope.cancel()
            await self._proc.wait()
        except Exception as exc:  # a system task must not raise; the actor ends all the same
            log.warning("the link to actor pid %s on %s failed: %r", self.remote_pid, self.host, exc)
        finally:
            with trio.CancelScope(shield=True):
                if self._proc.returncode is None:
                    self._proc.kill()
                    await self._proc.wait()
                await self.cleanup()
            self._code = self._code_from(status, self._proc.returncode)
            self._done.set()

    async def cleanup(self) -> None:
        """Called once the launcher process has ended (a Slurm step is cancelled here)."""

    @staticmethod
    def _code_from(status: tuple[str, str] | None, launcher_code: int | None) -> int:
        if status is not None and status[0] == "exit":
            return int(status[1])
        if status is not None and status[0] == "signal":
            return -int(status[1])
        return launcher_code if launcher_code is not None else -signal.SIGKILL

    async def _send_heartbeats(self) -> None:
        stdin = self._proc.stdin
        assert stdin is not None
        try:
            while True:
                line = b".\n"
                with trio.move_on_after(HEARTBEAT):
                    line = await self._lines.receive()
                await stdin.send_all(line)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the launcher ended; _read_output sees it too

    async def _read_output(self, leftover: bytes) -> tuple[str, str] | None:
        """Forward the actor's output to ours until the launcher's stdout ends; return
        the last status line (``("exit", code)`` or ``("signal", n)``), if any."""
        stdout = self._proc.stdout
        assert stdout is not None
        status, pending = None, leftover
        while True:
            *lines, pending = pending.split(b"\n")
            for line in lines:
                found = _status_of(line)
                if found is not None:
                    status = found
                else:
                    os.write(1, line + b"\n")
            chunk = await stdout.receive_some(65536)
            if not chunk:
                if pending:
                    os.write(1, pending)
                return status
            pending += chunk


async def _read_stderr(proc: trio.Process) -> str:
    assert proc.stderr is not None
    data = b""
    with trio.move_on_after(2):
        while chunk := await proc.stderr.receive_some(65536):
            data += chunk
    return data.decode(errors="replace").strip()


async def _drain(stream: Any) -> None:
    """Read and drop what the launcher prints on stderr after start-up (ssh's notes)."""
    try:
        while await stream.receive_some(65536):
            pass
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


_Linked = TypeVar("_Linked", bound="LinkedChild")


async def _start_linked(cmd: list[str], boot: Any, host: str, explain: Any, kind: type[_Linked]) -> _Linked:
    """Run ``cmd`` (which runs ``_remote`` on ``host``), hand it ``boot`` and wait for
    its ``ready`` line. ``explain(code, stderr)`` words a failure."""
    proc = await trio.lowlevel.open_process(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    assert proc.stdin is not None and proc.stdout is not None
    why = None
    try:
        raw = encoder.encode(boot)
        await proc.stdin.send_all(struct.pack(">I", len(raw)) + raw)
        with trio.move_on_after(START_TIMEOUT) as timer:
            status, pending = {}, b""
            while chunk := await proc.stdout.receive_some(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for i, line in enumerate(lines):
                    found = _status_of(line)
                    if found is not None:
                        status[found[0]] = found[1]
                    if "ready" in status:
                        trio.lowlevel.spawn_system_task(_drain, proc.stderr)
                        rest = b"".join(x + b"\n" for x in lines[i + 1 :]) + pending
                        return kind(proc, host, status, rest)
        if timer.cancelled_caught:
            why = f"no answer within {START_TIMEOUT:.0f}s"
    except BaseException:
        with trio.CancelScope(shield=True):
            proc.kill()
            await proc.wait()
        raise
    with trio.CancelScope(shield=True):
        if why is not None:
            proc.kill()
        code = await proc.wait()
        stderr = await _read_stderr(proc)
    raise LaunchError(f"could not start actor {boot.config.name!r} on {host}: {why or explain(code, stderr)}")


def _remote_command(python: str) -> list[str]:
    return [python, "-m", "notebook_actors._remote"]


class SSHLauncher(Launcher):
    """Start actors on another machine through the OpenSSH client.

    Args:
        destination: anything ``ssh`` accepts (``"gpu1"``, ``"user@host"``, a
            ``Host`` of your ``~/.ssh/config``).
        remote_python: the interpreter there (default: this one's path, as on a
            cluster with a shared filesystem). It must have notebook_actors installed.
        ssh_config: an OpenSSH client config file (``ssh -F``) instead of yours.
        ssh_options: more ``ssh`` arguments, e.g. ``["-J", "bastion"]``.
        connect_timeout: seconds to reach the host before giving up.

    The parent's Unix socket is forwarded to the host (``ssh -R``) into a socket file
    of mode 0600, so the actor's channel is carried, encrypted, by SSH, and no port
    is opened to the network.
    """

    def __init__(
        self,
        destination: str,
        *,
        remote_python: str | None = None,
        ssh_config: str | None = None,
        ssh_options: list[str] | tuple[str, ...] = (),
        connect_timeout: float = 10.0,
    ) -> None:
        self.host = destination
        self.remote_python = remote_python or sys.executable
        self.ssh_config = ssh_config
        self.ssh_options = list(ssh_options)
        self.connect_timeout = connect_timeout
        self.extra_addrs: list[str] = []

    def __repr__(self) -> str:
        return f"SSHLauncher({self.host!r})"

    def forwarding(self, *addrs: str) -> SSHLauncher:
        copy = SSHLauncher(
            self.host,
            remote_python=self.remote_python,
            ssh_config=self.ssh_config,
            ssh_options=self.ssh_options,
            connect_timeout=self.connect_timeout,
        )
        copy.extra_addrs = [*self.extra_addrs, *addrs]
        return copy

    def _ssh(self) -> list[str]:
        ssh = shutil.which("ssh")
        if ssh is None:
            raise LaunchError(f"cannot start an actor on {self.host}: no 'ssh' on PATH (install openssh-client)")
        base = [ssh, "-T", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={int(self.connect_timeout)}"]
        # the client gives up on a silent server, and a forward that cannot be made
        # fails the start instead of leaving an actor that cannot reach its parent
        base += ["-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=5", "-o", "ExitOnForwardFailure=yes"]
        if self.ssh_config:
            base += ["-F", self.ssh_config]
        return base + self.ssh_options

    def _explain(self, code: int, stderr: str) -> str:
        last = stderr.splitlines()[-1] if stderr else f"ssh exited with code {code}"
        if code == 127 or ("No such file or directory" in stderr and self.remote_python in stderr):
            return f"the interpreter {self.remote_python} is missing there ({last})"
        if "No module named" in stderr and "notebook_actors" in stderr:
            return f"notebook_actors is not installed for {self.remote_python} there ({last})"
        return last

    async def start(self, boot: Any) -> LinkedChild:
        routes, forwards = {}, []
        for addr in {boot.config.parent_addr, *boot.config.registry_addrs, *self.extra_addrs}:
            local = _uds_path(addr)
            if local is not None:
                far = f"/tmp/notebook_actors-link-{uuid.uuid4().hex}.sock"
                forwards += ["-R", f"{far}:{local}"]
                routes[addr] = f"uds:{far}"
        boot = _with_routes(boot, routes)
        remote = shlex.join(_remote_command(self.remote_python))
        cmd = [*self._ssh(), *forwards, self.host, "--", remote]
        return await _start_linked(cmd, boot, self.host, self._explain, LinkedChild)


def _with_routes(boot: Any, routes: dict[str, str]) -> Any:
    import msgspec

    return msgspec.structs.replace(boot, routes={**boot.routes, **routes})


class SlurmLauncher(Launcher):
    """Start each actor in Slurm: a job step (``srun``) inside an allocation, a batch
    job of its own (``sbatch``, the job-per-worker model) outside one.

    Args:
        partition, time, cpus, gpus: the usual resource requests.
        options: more ``srun``/``sbatch`` arguments (e.g. ``["--account=lab"]``).
        mode: ``"auto"`` (``srun`` inside an allocation, ``sbatch`` outside),
            ``"srun"`` or ``"sbatch"``.
        queue_timeout: seconds a batch job may wait in the queue before the start
            fails (``None``: as long as it takes).
        remote_python: the interpreter on the nodes (default: this one's path).

    Teardown, whatever ended the actor, cancels its step or job with ``scancel``.
    The nodes must reach the parent's socket: on one node, its Unix socket; across
    nodes the parent needs a TCP listener (``bind_addr=``), see docs/distribution.md.
    """

    def __init__(
        self,
        *,
        partition: str | None = None,
        time: str | None = None,
        cpus: int | None = None,
        gpus: int | None = None,
        options: list[str] | tuple[str, ...] = (),
        mode: str = "auto",
        queue_timeout: float | None = None,
        remote_python: str | None = None,
    ) -> None:
        if mode not in ("auto", "srun", "sbatch"):
            raise ValueError(f"SlurmLauncher(mode={mode!r}): choose 'auto', 'srun' or 'sbatch'")
        self.host = "slurm"
        self.partition, self.time, self.cpus, self.gpus = partition, time, cpus, gpus
        self.options = list(options)
        self.mode = mode
        self.queue_timeout = queue_timeout
        self.remote_python = remote_python or sys.executable

    def __repr__(self) -> str:
        return f"SlurmLauncher(partition={self.partition!r}, mode={self.mode!r})"

    def _requests(self, tool: str, job_name: str, *defaults: str) -> list[str]:
        path = shutil.which(tool)
        if path is None:
            raise LaunchError(f"cannot start an actor with Slurm: no {tool!r} on PATH")
        cmd = [path, "--ntasks=1", "--nodes=1", f"--job-name={job_name}", *defaults]
        for flag, value in (("--partition", self.partition), ("--time", self.time)):
            if value:
                cmd.append(f"{flag}={value}")
        if self.cpus:
            cmd.append(f"--cpus-per-task={self.cpus}")
        if self.gpus:
            cmd.append(f"--gpus={self.gpus}")
        return cmd + self.options

    def _explain(self, code: int, stderr: str) -> str:
        return stderr.splitlines()[-1] if stderr else f"srun exited with code {code}"

    async def start(self, boot: Any) -> Any:
        job_name = f"actor-{boot.config.name}-{boot.config.uid[:8]}"
        in_allocation = "SLURM_JOB_ID" in os.environ
        if self.mode == "sbatch" or (self.mode == "auto" and not in_allocation):
            return await BatchJob.submit(self, boot, job_name)
        cmd = self._requests("srun", job_name, "--quiet", "--kill-on-bad-exit=1")
        child = await _start_linked(cmd + _remote_command(self.remote_python), boot, "slurm", self._explain, SlurmStep)
        child.host = f"slurm:{child.started_as.get('job', '?')}"
        child.own_job = not in_allocation  # srun made a job for this actor
        return child


async def _scancel(target: str, *signal_args: str) -> None:
    scancel = shutil.which("scancel")
    if scancel:
        await trio.run_process(
            [scancel, "--quiet", *signal_args, target], check=False, capture_stdout=True, capture_stderr=True
        )


class SlurmStep(LinkedChild):
    """An actor running as a Slurm job step: ``scancel`` it on teardown, so that
    nothing stays queued or running in the cluster whatever ended the actor."""

    #: the job was made for this actor (not a step of the user's allocation)
    own_job = False

    async def cleanup(self) -> None:
        job = self.started_as.get("job")
        if job:
            # a step of the user's allocation ends alone; a job of our own ends whole
            await _scancel(job.partition(".")[0] if self.own_job else job)


class BatchJob:
    """An actor running as a Slurm batch job (``sbatch``): no stdio link, so the boot
    record goes in a file only this user can read (the job removes it once read), the
    job reports its status lines into a second file, and signals go through
    ``scancel``. The parent polls the status file; the actor exits by itself when
    its parent's channel closes, as every actor does.
    """

    POLL = 0.2

    def __init__(self, job: str, status_file: str, remote_pid: int, host: str) -> None:
        self.job = job
        self.pid = self.remote_pid = remote_pid
        self.host = host
        self.signals_sent: set[int] = set()
        self._status_file = status_file
        self._code: int | None = None
        self._done = trio.Event()
        trio.lowlevel.spawn_system_task(self._follow, name=f"slurm job {job}")

    @classmethod
    async def submit(cls, launcher: SlurmLauncher, boot: Any, job_name: str) -> BatchJob:
        from ._transport._uds import runtime_dir

        base = runtime_dir() / f"slurm-{boot.config.uid}"
        boot_file, status_file = f"{base}.boot", f"{base}.status"
        _write_private(boot_file, encoder.encode(boot))
        _write_private(status_file, b"")
        script = shlex.join([*_remote_command(launcher.remote_python), "--batch", boot_file, status_file])
        # the job's own stdout/stderr: /dev/null unless options name a file (--output=...)
        cmd = [*launcher._requests("sbatch", job_name, "--parsable", "--output=/dev/null"), f"--wrap={script}"]
        done = await trio.run_process(cmd, check=False, capture_stdout=True, capture_stderr=True)
        if done.returncode != 0:
            _remove(boot_file, status_file)
            why = done.stderr.decode(errors="replace").strip().splitlines() or [f"sbatch exited with {done.returncode}"]
            raise LaunchError(f"could not start actor {boot.config.name!r} with Slurm: {why[-1]}")
        job = done.stdout.decode().strip().split(";")[0]
        try:
            with trio.move_on_after(launcher.queue_timeout if launcher.queue_timeout is not None else float("inf")):
                while True:
                    status = _read_status(status_file)
                    if "ready" in status:
                        return cls(job, status_file, int(status["ready"]), f"slurm:{job}")
                    if not await _job_alive(job):
                        raise LaunchError(
                            f"could not start actor {boot.config.name!r} with Slurm: job {job} ended first"
                        )
                    await trio.sleep(cls.POLL)
            raise LaunchError(
                f"actor {boot.config.name!r}: Slurm job {job} still queued after {launcher.queue_timeout}s"
            )
        except BaseException:
            with trio.CancelScope(shield=True):
                await _scancel(job)
                _remove(boot_file, status_file)
            raise

    @property
    def returncode(self) -> int | None:
        return self._code

    async def wait(self) -> int:
        await self._done.wait()
        assert self._code is not None
        return self._code

    def signal(self, sig: int) -> None:
        if self._code is None:
            self.signals_sent.add(sig)
            trio.lowlevel.spawn_system_task(_scancel, self.job, f"--signal={int(sig)}", "--full")

    def terminate(self) -> None:
        self.signal(signal.SIGTERM)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

    async def _follow(self) -> None:
        status: dict[str, str] = {}
        try:
            while "exit" not in status and "signal" not in status and await _job_alive(self.job):
                await trio.sleep(self.POLL)
                status = _read_status(self._status_file)
            status = _read_status(self._status_file)
        except Exception as exc:  # a system task must not raise; the job is cancelled below
            log.warning("following Slurm job %s failed: %r", self.job, exc)
        finally:
            with trio.CancelScope(shield=True):
                await _scancel(self.job)
            _remove(self._status_file)
            found = next(((w, status[w]) for w in ("exit", "signal") if w in status), None)
            self._code = LinkedChild._code_from(found, None)
            self._done.set()


def _write_private(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _remove(*paths: str) -> None:
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _read_status(path: str) -> dict[str, str]:
    try:
        with open(path, "rb") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return {}
    return dict(found for line in lines if (found := _status_of(line)) is not None)


async def _job_alive(job: str) -> bool:
    """Whether the job is still pending or running (``squeue`` lists it)."""
    squeue = shutil.which("squeue")
    if squeue is None:
        return False
    done = await trio.run_process(
        [squeue, "-h", "-j", job, "-o", "%T"], check=False, capture_stdout=True, capture_stderr=True
    )
    return done.returncode == 0 and bool(done.stdout.strip())


def launcher_for(host: Any, launcher: Any = None) -> Launcher | None:
    """The launcher that ``host=``/``launcher=`` ask for: a :class:`Launcher` as is,
    ``launcher="slurm"`` a default :class:`SlurmLauncher`, ``launcher="ssh"`` or a
    ``host`` string an :class:`SSHLauncher` to it, ``None`` this machine."""
    if launcher is None or isinstance(launcher, Launcher):
        chosen = launcher
    elif launcher == "slurm":
        chosen = SlurmLauncher()
    elif launcher == "ssh" and isinstance(host, str):
        chosen = SSHLauncher(host)
    else:
        raise ValueError(f"launcher={launcher!r}: use 'slurm', 'ssh' (with host=) or a Launcher object")
    if chosen is not None:
        return chosen
    if host is None or isinstance(host, Launcher):
        return host
    if isinstance(host, str):
        return SSHLauncher(host)
    raise TypeError(f"host= takes an SSH destination or a Launcher, not {type(host).__name__}")
