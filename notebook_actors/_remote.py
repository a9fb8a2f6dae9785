"""The far end of an actor started on another machine: ``python -m notebook_actors._remote``.

A launcher (``ssh``, ``srun``) runs this on the other host with its stdio joined to
the parent actor. It starts the actor (``notebook_actors._child``) as its own child,
then stands between the two, because a remote actor cannot watch its parent's
process the way a local one does:

Under a batch scheduler (``python -m notebook_actors._remote --batch BOOT STATUS``,
for ``sbatch``) there is no stdio link: see :func:`_batch`.

- **stdin**: first the boot record (4-byte length, then the record), then the
  launcher's lines: ``.`` once a second (the heartbeat) or ``signal N``. End of input,
  or no heartbeat for ``HEARTBEAT_TIMEOUT`` seconds (the link dropped), ends the
  actor: SIGTERM to its process group, SIGKILL after a grace.
- **stdout**: the actor's own output, and status lines that start with ``STATUS``:
  ``job ID.STEP`` under Slurm, ``ready PID`` once the actor runs, then ``exit CODE`` or ``signal N`` when it ends,
  so the parent reports the exact exit code or signal (an ``ssh`` exit status cannot
  tell a signal from a lost connection).
"""

from __future__ import annotations

import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time

#: seconds without a heartbeat line after which the link counts as dropped
HEARTBEAT_TIMEOUT = 5.0
#: seconds between SIGTERM and SIGKILL when the link ends
TERM_GRACE = 1.0
#: starts each status line on stdout (a record separator: never in ordinary output)
STATUS = "\x1enotebook_actors "


def _read_exact(fd: int, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        if not chunk:
            raise EOFError("the launcher closed the link before the boot record arrived")
        data += chunk
    return data


def _read_boot(fd: int) -> bytes:
    (size,) = struct.unpack(">I", _read_exact(fd, 4))
    return _read_exact(fd, size)


def _report(line: str) -> None:
    os.write(_status_fd, f"{STATUS}{line}\n".encode())


def _end_group(pid: int) -> None:
    """SIGTERM the actor's process group, then SIGKILL it after ``TERM_GRACE``."""
    for sig, pause in ((signal.SIGTERM, TERM_GRACE), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + pause
        while time.monotonic() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG) != (0, 0):
                    return
            except ChildProcessError:
                return
            time.sleep(0.02)


def _follow_launcher(fd: int, actor: subprocess.Popen[bytes]) -> None:
    """Relay the launcher's signal lines; end the actor when the link ends or goes quiet."""
    pending = b""
    while actor.poll() is None:
        ready, _, _ = select.select([fd], [], [], HEARTBEAT_TIMEOUT)
        chunk = os.read(fd, 4096) if ready else b""
        if not chunk:  # end of input, or silence: the parent or the link is gone
            _end_group(actor.pid)
            return
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.startswith(b"signal "):
                try:
                    os.kill(actor.pid, int(line.split()[1]))
                except (ProcessLookupError, ValueError):
                    pass


def _start_actor(boot: bytes) -> subprocess.Popen[bytes]:
    actor = subprocess.Popen(
        [sys.executable, "-m", "notebook_actors._child"],
        stdin=subprocess.PIPE,
        start_new_session=True,  # one group: the actor and what it starts end together
    )
    assert actor.stdin is not None
    actor.stdin.write(boot)
    actor.stdin.close()
    return actor


def _wait_and_report(actor: subprocess.Popen[bytes]) -> None:
    code = actor.wait()
    _report(f"signal {-code}" if code < 0 else f"exit {code}")
    sys.exit(128 - code if code < 0 else code)


def _linked() -> None:
    """Run under a launcher whose stdio is the link (ssh, srun)."""
    stdin = sys.stdin.fileno()
    try:
        boot = _read_boot(stdin)
    except EOFError as exc:
        sys.exit(f"notebook_actors: {exc}")
    actor = _start_actor(boot)
    job, step = os.environ.get("SLURM_JOB_ID"), os.environ.get("SLURM_STEP_ID")
    if job and step:
        _report(f"job {job}.{step}")
    _report(f"ready {actor.pid}")
    threading.Thread(target=_follow_launcher, args=(stdin, actor), name="launcher-link", daemon=True).start()
    _wait_and_report(actor)


def _batch(boot_file: str, status_file: str) -> None:
    """Run as a batch job (``sbatch``): no stdio link. The boot record comes in a file
    only this user can read (removed once read); status lines go to ``status_file``;
    the scheduler's SIGTERM (``scancel``) ends the actor's group. The actor itself
    exits when its parent's channel closes, as every actor does."""
    global _status_fd
    with open(boot_file, "rb") as f:
        boot = f.read()
    os.unlink(boot_file)
    _status_fd = os.open(status_file, os.O_WRONLY | os.O_APPEND)
    actor = _start_actor(boot)
    signal.signal(signal.SIGTERM, lambda *_: _end_group(actor.pid))
    _report(f"ready {actor.pid}")
    _wait_and_report(actor)


#: where status lines go: stdout (a launcher's link) or a batch job's status file
_status_fd = 1


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--batch":
        _batch(sys.argv[2], sys.argv[3])
    else:
        _linked()


if __name__ == "__main__":
    main()
