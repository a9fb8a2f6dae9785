"""Test hosts on one machine: a network namespace per host, joined to this one by a
veth pair, running a real ``sshd`` with generated host and client keys (key-only
auth). The filesystem is shared, so the host runs this very interpreter and package,
as a cluster with a shared home directory would.

The host also gets a mount namespace in which this machine's actor socket directory
is an empty tmpfs: an actor there can reach its parent only through the socket its
launcher forwards, as on a real second machine.

Needs root (network namespaces), ``ip`` (iproute2) and ``sshd`` (openssh-server).
``TestHost.ssh_config`` is an OpenSSH client config naming the host, which is what
``SSHLauncher(..., ssh_config=...)`` takes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["TestHost", "can_make_test_hosts", "test_host"]

SSHD = "/usr/sbin/sshd"


def can_make_test_hosts() -> str | None:
    """None if test hosts can be made here, else why not (for a skip reason)."""
    if os.geteuid() != 0:
        return "test hosts need root (network namespaces)"
    for tool in ("ip", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"{tool} is missing (apt-get install iproute2 openssh-client)"
    if not os.path.exists(SSHD):
        return f"{SSHD} is missing (apt-get install openssh-server)"
    return None


@dataclass
class TestHost:
    """One test host: its namespace, its address and the client config that reaches it."""

    __test__ = False  # not a pytest test class

    name: str
    netns: str
    address: str
    ssh_config: str
    sshd: subprocess.Popen[bytes]
    host_veth: str

    def run(self, *cmd: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        """Run a command inside the host's network namespace."""
        return subprocess.run(["ip", "netns", "exec", self.netns, *cmd], capture_output=True, text=True, **kw)

    def link_down(self) -> None:
        """Cut the host off the network (its end of the veth pair goes down)."""
        subprocess.run(["ip", "link", "set", self.host_veth, "down"], check=True)

    def link_up(self) -> None:
        subprocess.run(["ip", "link", "set", self.host_veth, "up"], check=True)


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def _free_subnet() -> int:
    """A 10.231.N.0/24 subnet not yet on any of this machine's links."""
    used = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    for n in range(1, 250):
        if f"10.231.{n}." not in used:
            return n
    raise RuntimeError("no free 10.231.N.0/24 subnet for a test host")


def _keys(workdir: Path) -> tuple[Path, Path]:
    host_key, client_key = workdir / "host_key", workdir / "client_key"
    for key in (host_key, client_key):
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
    (workdir / "authorized_keys").write_text(client_key.with_suffix(".pub").read_text())
    return host_key, client_key


def _sshd_config(workdir: Path, address: str, host_key: Path) -> Path:
    config = workdir / "sshd_config"
    config.write_text(
        f"ListenAddress {address}:22\n"
        f"HostKey {host_key}\n"
        f"AuthorizedKeysFile {workdir}/authorized_keys\n"
        f"PidFile {workdir}/sshd.pid\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        "StrictModes no\nPermitRootLogin prohibit-password\n"
        "AllowStreamLocalForwarding yes\nStreamLocalBindUnlink yes\n"
        # an admin's usual keepalive: a silent client is dropped within seconds
        "ClientAliveInterval 1\nClientAliveCountMax 3\n"
        "LogLevel ERROR\n"
        # the test run's process mark, so its leftover-process guard sees these too
        "AcceptEnv NOTEBOOK_ACTORS_TEST_SESSION\n"
    )
    return config


def _client_config(workdir: Path, name: str, address: str, host_key: Path, client_key: Path) -> Path:
    known = workdir / "known_hosts"
    known.write_text(f"{address} {host_key.with_suffix('.pub').read_text()}")
    config = workdir / "ssh_config"
    config.write_text(
        f"Host {name}\n"
        f"  HostName {address}\n  User {os.environ.get('USER', 'root')}\n"
        f"  IdentityFile {client_key}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {known}\n  StrictHostKeyChecking yes\n"
        "  BatchMode yes\n  LogLevel ERROR\n  SendEnv NOTEBOOK_ACTORS_TEST_SESSION\n"
    )
    return config


#: run by ``sh -c`` as ``SSHD -D -e -f CONFIG DIR...``: an empty tmpfs over each DIR, then sshd
_HIDE_THEN_RUN = (
    'sshd=$0 config=$4; shift 4; for d; do mount -t tmpfs -o mode=0700 none "$d"; done; exec "$sshd" -D -e -f "$config"'
)


def _local_socket_dirs() -> list[str]:
    """The directories where this machine's actors keep their sockets."""
    from .._transport._uds import runtime_dir

    dirs = [str(runtime_dir())]
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg) and xdg not in dirs:
        dirs.append(xdg)
    return dirs


def _wait_listening(
    host_netns: str, address: str, sshd: subprocess.Popen[bytes], log: Path, timeout: float = 60.0
) -> None:
    """Wait until ``sshd`` listens at ``address``; a loaded machine may take seconds,
    an sshd that exited (its error is in ``log``) never will."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        probe = subprocess.run(
            ["ip", "netns", "exec", host_netns, "ss", "-ltn", f"src {address}:22"], capture_output=True, text=True
        )
        if f"{address}:22" in probe.stdout:
            return
        if sshd.poll() is not None:
            raise RuntimeError(f"sshd in {host_netns} exited ({sshd.returncode}): {log.read_text().strip()}")
        time.sleep(0.05)
    raise RuntimeError(f"sshd in {host_netns} did not listen on {address}:22 within {timeout}s")


@contextlib.contextmanager
def test_host(name: str = "testhost") -> Iterator[TestHost]:
    """A test host for the ``with`` block; everything it made is removed after."""
    tag = uuid.uuid4().hex[:6]
    netns, outer, inner = f"na-{tag}", f"na{tag}o", f"na{tag}i"
    subnet = _free_subnet()
    here, there = f"10.231.{subnet}.1", f"10.231.{subnet}.2"
    workdir = Path(tempfile.mkdtemp(prefix=f"na-host-{tag}-"))
    workdir.chmod(0o700)
    sshd = None
    try:
        _run("ip", "netns", "add", netns)
        _run("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
        _run("ip", "link", "set", inner, "netns", netns)
        _run("ip", "addr", "add", f"{here}/24", "dev", outer)
        _run("ip", "link", "set", outer, "up")
        _run("ip", "netns", "exec", netns, "ip", "addr", "add", f"{there}/24", "dev", inner)
        _run("ip", "netns", "exec", netns, "ip", "link", "set", inner, "up")
        _run("ip", "netns", "exec", netns, "ip", "link", "set", "lo", "up")
        host_key, client_key = _keys(workdir)
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege-separation directory
        config = _sshd_config(workdir, there, host_key)
        in_host = ["ip", "netns", "exec", netns, "unshare", "--mount", "--propagation", "private"]
        sshd_log = workdir / "sshd.log"
        with open(sshd_log, "wb") as log:
            sshd = subprocess.Popen(
                [*in_host, "sh", "-c", _HIDE_THEN_RUN, SSHD, "-D", "-e", "-f", str(config), *_local_socket_dirs()],
                stderr=log,
            )
        _wait_listening(netns, there, sshd, sshd_log)
        config = _client_config(workdir, name, there, host_key, client_key)
        yield TestHost(name, netns, there, str(config), sshd, outer)
    finally:
        if sshd is not None:
            sshd.terminate()
            try:
                sshd.wait(5)
            except subprocess.TimeoutExpired:
                sshd.kill()
                sshd.wait()
        subprocess.run(["ip", "link", "del", outer], capture_output=True)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)
