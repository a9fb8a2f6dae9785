"""A one-node Slurm cluster for tests: ``munged``, ``slurmctld`` and ``slurmd`` (Debian's
``slurm-wlm`` and ``munge``) with a private config, state and log directory.

The config is passed through ``SLURM_CONF`` (set for the ``with`` block), so the
machine's ``/etc/slurm`` is neither read nor changed. Needs root.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["can_run_slurm", "slurm_cluster"]

DAEMONS = ("munged", "slurmctld", "slurmd")


def can_run_slurm() -> str | None:
    """None if a test cluster can run here, else why not (for a skip reason)."""
    if os.geteuid() != 0:
        return "a test Slurm cluster needs root"
    for tool in (*DAEMONS, "srun", "scancel", "squeue"):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            return f"{tool} is missing (apt-get install slurm-wlm munge)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _config(workdir: Path, node: str) -> Path:
    conf = workdir / "slurm.conf"
    conf.write_text(
        "ClusterName=natest\n"
        f"SlurmctldHost={node}\nSlurmctldPort={_free_port()}\nSlurmdPort={_free_port()}\n"
        "AuthType=auth/munge\nCredType=cred/munge\nSlurmUser=root\n"
        "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n"
        "JobAcctGatherType=jobacct_gather/none\nMpiDefault=none\nReturnToService=2\n"
        f"SlurmctldPidFile={workdir}/slurmctld.pid\nSlurmdPidFile={workdir}/slurmd.pid\n"
        f"SlurmdSpoolDir={workdir}/spool\nStateSaveLocation={workdir}/state\n"
        f"SlurmctldLogFile={workdir}/slurmctld.log\nSlurmdLogFile={workdir}/slurmd.log\n"
        "SchedulerType=sched/builtin\nSelectType=select/cons_tres\nSelectTypeParameters=CR_CPU\n"
        f"NodeName={node} CPUs={os.cpu_count() or 1} State=UNKNOWN\n"
        # many small actors share the test machine's cores
        "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:16\n"
    )
    for sub in ("spool", "state"):
        (workdir / sub).mkdir()
    return conf


def _start_munge() -> subprocess.Popen[bytes] | None:
    """Start munged unless one already answers (a machine's own)."""
    if subprocess.run(["munge", "-n"], capture_output=True).returncode == 0:
        return None
    os.makedirs("/run/munge", exist_ok=True)
    shutil.chown("/run/munge", "munge", "munge")
    return subprocess.Popen(["runuser", "-u", "munge", "--", "/usr/sbin/munged", "--foreground"])


def _wait_for_node(env: dict[str, str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        probe = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, env=env)
        if probe.returncode == 0 and probe.stdout.strip() in ("idle", "mix", "alloc"):
            return
        time.sleep(0.1)
    raise RuntimeError("the test Slurm node did not become ready")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def slurm_cluster() -> Iterator[Path]:
    """A running one-node cluster for the ``with`` block; yields its ``slurm.conf``."""
    workdir = Path(tempfile.mkdtemp(prefix="na-slurm-"))
    conf = _config(workdir, socket.gethostname().split(".")[0])
    env = {**os.environ, "SLURM_CONF": str(conf)}
    started: list[subprocess.Popen[bytes]] = []
    old = os.environ.get("SLURM_CONF")
    try:
        munge = _start_munge()
        if munge is not None:
            started.append(munge)
            time.sleep(0.2)
        for daemon in ("slurmctld", "slurmd"):
            started.append(
                subprocess.Popen(
                    [daemon, "-D", "-f", str(conf)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            )
        _wait_for_node(env)
        os.environ["SLURM_CONF"] = str(conf)
        yield conf
    finally:
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
        for proc in reversed(started):
            _stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)
