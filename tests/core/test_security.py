"""Security of a tree: the secret reaches children without a command line or an
environment variable, explicit secrets make separate trees (and TCP programs) that
cannot call each other, and programs sharing a key file meet over TCP."""

from __future__ import annotations

import os
import sys
import uuid

import pytest
import trio

import notebook_actors as na
from notebook_actors import testing
from notebook_actors._exceptions import HandshakeError
from notebook_actors.testing import trio_test

TIMEOUT = 60


def my_pid() -> int:
    return os.getpid()


def my_secret() -> bytes:
    return na.current_actor().secret


def proc_file(pid: int, name: str) -> bytes:
    with open(f"/proc/{pid}/{name}", "rb") as f:
        return f.read()


@trio_test
async def test_secret_not_on_command_line_or_environment():
    """Test that a child knows the tree's secret, and that it appears neither in its
    command line nor in its environment (the default 'trio' start method sends the
    boot spec on the child's stdin; the mp_* methods pass it through a pipe)."""
    start_method = "trio"
    secret = f"tree-secret-{uuid.uuid4().hex}".encode()
    with trio.fail_after(TIMEOUT):
        async with na.open_nursery(
            registry_addrs=[testing.private_registry_addr()], secret=secret, start_method=start_method
        ) as n:
            portal = await n.start_actor("holder", enable_modules=[__name__])
            assert await portal.run(my_secret) == secret
            pid = await portal.run(my_pid)
            for name in ("cmdline", "environ"):
                data = proc_file(pid, name)
                assert data, f"/proc/{pid}/{name} is empty: cannot check"
                assert secret not in data and secret.hex().encode() not in data
            await portal.cancel_actor()


@trio_test
async def test_explicit_secret_file_for_a_tree(tmp_path):
    """Test that a tree started with a key file passes that key to its children."""
    key = tmp_path / "tree.key"
    key.write_bytes(b"key-from-a-file-" + uuid.uuid4().hex.encode())
    key.chmod(0o600)
    with trio.fail_after(TIMEOUT):
        async with na.open_nursery(registry_addrs=[testing.private_registry_addr()], secret=key) as n:
            portal = await n.start_actor("holder", enable_modules=[__name__])
            assert await portal.run(my_secret) == key.read_bytes()
            await portal.cancel_actor()


DAEMON = """
import sys
import trio
import notebook_actors as na

async def main():
    async with na.open_root_actor(name="daemon", registry_addrs=[sys.argv[1]], secret=sys.argv[2],
                                  enable_modules=["svc_{tag}"], bind_addr=("127.0.0.1", 0)) as me:
        print("ready", me.is_arbiter, flush=True)
        await trio.sleep_forever()

trio.run(main)
"""

SERVICE = """
import notebook_actors as na

def greet(who):
    return f"hello {who} from {na.current_actor().name}"
"""

OUTSIDER = """
import sys
import trio
import notebook_actors as na

async def main():
    async with na.open_root_actor(name="outsider", registry_addrs=[sys.argv[1]], secret=sys.argv[2]):
        try:
            async with na.find_actor("daemon") as d:
                print("reached", d)
        except na.TransportClosed as exc:
            print("refused TransportClosed", exc)
        except ConnectionError as exc:
            print("refused", type(exc).__name__, exc)

trio.run(main)
"""


def free_tcp_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@trio_test
async def test_tcp_programs_share_a_key_file_and_refuse_others(tmp_path, monkeypatch):
    """Test the across-hosts set-up on one host: a daemon on a TCP registry with a key
    file; a program with the same key file joins and calls it over TCP; a program with
    another key is refused at the handshake and the daemon keeps serving."""
    tag = uuid.uuid4().hex[:8]
    (tmp_path / f"svc_{tag}.py").write_text(SERVICE)
    (tmp_path / "daemon.py").write_text(DAEMON.format(tag=tag))
    (tmp_path / "outsider.py").write_text(OUTSIDER)
    good, bad = tmp_path / "good.key", tmp_path / "bad.key"
    for key in (good, bad):
        key.write_bytes(uuid.uuid4().hex.encode())
        key.chmod(0o600)
    monkeypatch.syspath_prepend(str(tmp_path))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    reg = f"tcp:127.0.0.1:{free_tcp_port()}"
    daemon = await trio.lowlevel.open_process(
        [sys.executable, str(tmp_path / "daemon.py"), reg, str(good)],
        env=env,
        start_new_session=True,
        stdout=-1,
        stderr=-1,
    )
    try:
        with trio.fail_after(TIMEOUT):
            ready = b""
            while b"\n" not in ready:  # the daemon hosts the registry before we start
                chunk = await daemon.stdout.receive_some()
                assert chunk, "the daemon exited before it was ready"
                ready += chunk
            assert ready.startswith(b"ready True")
            svc = __import__(f"svc_{tag}")
            async with na.open_root_actor(
                name="insider", registry_addrs=[reg], secret=good, bind_addr=("127.0.0.1", 0)
            ) as me:
                assert me.accept_addr[0] == "127.0.0.1"  # tractor's (host, port)
                async with na.wait_for_actor("daemon") as d:
                    assert d.channel.raddr[0] == "127.0.0.1"  # tractor's (host, port)
                    assert await d.run(svc.greet, who="insider") == "hello insider from daemon"
                out = await trio.run_process(
                    [sys.executable, str(tmp_path / "outsider.py"), reg, str(bad)],
                    env=env,
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                )
                assert out.returncode == 0, out.stderr.decode()
                assert out.stdout.decode().startswith("refused HandshakeError"), out.stdout.decode()
                async with na.find_actor("daemon") as d:  # still serving its real peers
                    assert await d.run(svc.greet, who="again") == "hello again from daemon"
    finally:
        daemon.send_signal(2)
        with trio.fail_after(30):
            await daemon.wait()
        err = b""
        while chunk := await daemon.stderr.receive_some():
            err += chunk
        await daemon.stderr.aclose()
        await daemon.stdout.aclose()
    assert b"dropped an unauthenticated peer" in err


@trio_test
async def test_other_secret_cannot_reach_tree():
    """Test that an in-process dial with another secret gets HandshakeError from a
    running tree's actor."""
    from notebook_actors._channel import connect
    from notebook_actors.msg import Ident

    with trio.fail_after(TIMEOUT):
        async with na.open_nursery(registry_addrs=[testing.private_registry_addr()]) as n:
            portal = await n.start_actor("guarded", enable_modules=[__name__])
            addr = (await portal.run_from_ns("self", "tree_snapshot"))["addr"]
            with pytest.raises(HandshakeError, match=r"failed to prove|refused our handshake"):
                await connect(addr, b"wrong-" + os.urandom(16), Ident(("x", "y"), os.getpid(), None))
            assert await portal.run(my_pid) != os.getpid()
            await portal.cancel_actor()
