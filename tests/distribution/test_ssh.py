"""Actors on another host through the OpenSSH client: a real sshd in its own network
namespace (``testing._hosts``), key-only auth, the package reached through the shared
filesystem as on a cluster."""

from __future__ import annotations

import json
import os
import signal
import textwrap
import time
from pathlib import Path

import pytest
import trio

import notebook_actors as na
from notebook_actors import testing

#: a bound, not a delay: the checks return as soon as the processes are gone
GONE_WITHIN = 5.0


def where() -> dict:
    """Which machine (network namespace) and process this runs in."""
    return {"netns": os.readlink("/proc/self/ns/net"), "pid": os.getpid()}


def exit_with(code: int) -> None:
    os._exit(code)


def fail_here() -> None:
    raise ValueError("bad value on the far host")


async def count_up(n: int):
    for i in range(n):
        yield i


@na.context
async def echo(ctx) -> int:
    await ctx.started()
    seen = 0
    async with ctx.open_stream() as stream:
        async for msg in stream:
            await stream.send(msg)
            seen += 1
    return seen


async def spawn_grandchild() -> dict:
    """From an actor on the far host: start a child there and ask where it runs."""
    async with na.open_nursery() as n:
        portal = await n.start_actor("grandchild", enable_modules=[__name__])
        found = {"child": where(), "grandchild": await portal.run(where)}
        await portal.cancel_actor()
        return found


def launcher(host: testing.TestHost, **kw) -> na.SSHLauncher:
    return na.SSHLauncher(host.name, ssh_config=host.ssh_config, **kw)


@testing.trio_test
async def test_an_actor_runs_on_the_other_host_and_answers(ssh_host, reg):
    """Test that an actor started with an SSH launcher runs in the other host's
    network namespace and serves RPC through the forwarded socket."""
    async with na.open_nursery(**reg) as n:
        portal = await n.start_actor("far", enable_modules=[__name__], host=launcher(ssh_host))
        far = await portal.run(where)
        assert far["netns"] == ssh_host.run("readlink", "/proc/self/ns/net").stdout.strip()
        assert far["netns"] != where()["netns"]
        assert await portal.run(sum_of, xs=[1, 2, 3]) == 6
        await portal.cancel_actor()


def sum_of(xs: list[int]) -> int:
    return sum(xs)


@testing.trio_test
async def test_a_remote_error_keeps_type_and_traceback_and_names_the_host(ssh_host, reg):
    """Test that an error on the far host is boxed with its type, its traceback and
    the host it ran on."""
    async with na.open_nursery(**reg) as n:
        portal = await n.start_actor("far", enable_modules=[__name__], host=launcher(ssh_host))
        with pytest.raises(na.RemoteActorError) as info:
            await portal.run(fail_here)
        assert info.value.type is ValueError
        assert "fail_here" in info.value.tb_str
        assert ssh_host.name in str(info.value)
        await portal.cancel_actor()


@testing.trio_test
async def test_streams_and_contexts_cross_hosts(ssh_host, reg):
    """Test that 10,000 messages stream both ways through a context on the far host,
    and an async-generator stream arrives whole."""
    async with na.open_nursery(**reg) as n:
        portal = await n.start_actor("far", enable_modules=[__name__], host=launcher(ssh_host))
        async with portal.open_context(echo) as (ctx, _):
            async with ctx.open_stream() as stream:

                async def send_all() -> None:
                    for i in range(10_000):
                        await stream.send(i)

                async with trio.open_nursery() as tn:
                    tn.start_soon(send_all)
                    got = [await stream.receive() for _ in range(10_000)]
        assert got == list(range(10_000))
        assert await ctx.result() == 10_000
        async with portal.open_stream_from(count_up, n=100) as stream:
            assert [x async for x in stream] == list(range(100))
        await portal.cancel_actor()


@testing.trio_test
async def test_actors_nest_on_the_far_host(ssh_host, reg):
    """Test that an actor on the far host starts its own child there."""
    async with na.open_nursery(**reg) as n:
        portal = await n.start_actor("far", enable_modules=[__name__], host=launcher(ssh_host))
        found = await portal.run(spawn_grandchild)
        assert found["grandchild"]["netns"] == found["child"]["netns"] != where()["netns"]
        await portal.cancel_actor()


@testing.trio_test
async def test_cancel_ends_the_remote_process(ssh_host, reg):
    """Test that cancelling the nursery ends the actor's process on the far host."""
    async with na.open_nursery(**reg) as n:
        portal = await n.start_actor("far", enable_modules=[__name__], host=launcher(ssh_host))
        pid = (await portal.run(where))["pid"]
        await n.cancel()
    assert testing.wait_until_gone([pid], GONE_WITHIN) == []


@testing.trio_test
async def test_an_exit_code_on_the_far_host_reaches_the_caller(ssh_host, reg):
    """Test that an actor that exits with code 3 on the far host is reported with
    that code."""
    with pytest.raises(na.ActorCrashed, match="3"):
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("far", enable_modules=[__name__], host=launcher(ssh_host))
            await portal.run(exit_with, code=3)


ROOT_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import trio
    import notebook_actors as na

    def where():
        return os.getpid()

    async def main():
        far = na.SSHLauncher(sys.argv[2], ssh_config=sys.argv[3])
        async with na.open_nursery(registry_addrs=[sys.argv[1]]) as n:
            portal = await n.start_actor("far", enable_modules=["__main__"], host=far)
            print("PID", json.dumps(await portal.run(where)), flush=True)
            await trio.sleep_forever()

    if __name__ == "__main__":
        trio.run(main)
    """
)


def test_sigkill_of_the_local_root_ends_the_remote_actor(ssh_host, tmp_path):
    """Test that SIGKILL of the local root ends its actor on the far host."""
    script = tmp_path / "root.py"
    script.write_text(ROOT_SCRIPT)
    proc = testing.start_script(str(script), testing.private_registry_addr(), ssh_host.name, ssh_host.ssh_config)
    try:
        line = proc.stdout.readline()
        assert line.startswith("PID"), line + proc.stderr.read()
        remote = json.loads(line.split(" ", 1)[1])
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert testing.wait_until_gone([remote], GONE_WITHIN) == []
    finally:
        testing.kill_all([p.pid for p in testing.descendants(proc.pid)] + [proc.pid])
        proc.communicate()


@testing.trio_test
async def test_a_dropped_link_ends_the_remote_actor_and_tells_the_caller(ssh_host, reg):
    """Test that when the network to the far host goes down, the far actor exits by
    itself and the caller gets an error instead of a hang."""
    try:
        with pytest.raises((na.ActorCrashed, na.TransportClosed, na.RemoteActorError)):
            async with na.open_nursery(**reg) as n:
                portal = await n.start_actor("far", enable_modules=[__name__], host=launcher(ssh_host))
                pid = (await portal.run(where))["pid"]
                ssh_host.link_down()
                with trio.fail_after(30):  # a hang guard: the link's keepalives end it in seconds
                    await portal.run(sleep_long)
        assert testing.wait_until_gone([pid], 10.0) == []
    finally:
        ssh_host.link_up()


async def sleep_long() -> None:
    await trio.sleep(3600)


@testing.trio_test
async def test_an_unreachable_host_fails_promptly_naming_it(reg):
    """Test that a host nobody answers at fails start_actor within 15 s with an
    error naming the host, and leaves nothing behind."""
    far = na.SSHLauncher("203.0.113.9", ssh_options=["-o", "ConnectTimeout=2"], connect_timeout=2)
    started = time.monotonic()
    async with na.open_nursery(**reg) as n:
        with pytest.raises(na.LaunchError, match=r"203\.0\.113\.9"):
            await n.start_actor("nowhere", host=far)
    assert time.monotonic() - started < 15


@testing.trio_test
async def test_an_unknown_host_key_fails_naming_the_host(ssh_host, reg, tmp_path):
    """Test that a host whose key is not known is refused (BatchMode, no prompt)."""
    config = tmp_path / "ssh_config"
    text = Path(ssh_host.ssh_config).read_text()
    config.write_text(text.replace("UserKnownHostsFile", f"UserKnownHostsFile {tmp_path}/empty #"))
    async with na.open_nursery(**reg) as n:
        with pytest.raises(na.LaunchError, match=ssh_host.name):
            await n.start_actor("far", host=na.SSHLauncher(ssh_host.name, ssh_config=str(config)))


@testing.trio_test
async def test_a_missing_interpreter_is_named(ssh_host, reg):
    """Test that a remote_python that does not exist there is named in the error."""
    async with na.open_nursery(**reg) as n:
        with pytest.raises(na.LaunchError, match="/nonexistent/python"):
            await n.start_actor("far", host=launcher(ssh_host, remote_python="/nonexistent/python"))


@testing.trio_test
async def test_the_tree_shows_the_host(ssh_host, reg):
    """Test that the tree view names the host a remote actor runs on."""
    async with na.open_nursery(**reg) as n:
        portal = await n.start_actor("far", enable_modules=[__name__], host=launcher(ssh_host))
        await portal.run(where)
        async with na.open_tree_watch() as watch:
            with trio.fail_after(10):
                hosts: dict = {}
                async for _ in watch:
                    hosts = {node["name"]: node["host"] for node in watch.snapshot()["nodes"].values()}
                    if hosts.get("far") == ssh_host.name:
                        break
        assert hosts["far"] == ssh_host.name and hosts["root"] is None
        await portal.cancel_actor()


def test_a_breakpoint_on_the_far_host_opens_here(ssh_host):
    """Test that the routed debugger reaches an actor on the far host: its pdb++
    prompt shows on this terminal, evaluates there, and continues."""
    import sys

    import pexpect

    script = Path(__file__).parent / "remote_breakpoint.py"
    args = [str(script), testing.private_registry_addr(), ssh_host.name, ssh_host.ssh_config]
    env = {**os.environ, "NO_COLOR": "1", "TERM": "dumb", "PYTHONUNBUFFERED": "1"}
    child = pexpect.spawn(sys.executable, args, env=env, encoding="utf-8", timeout=30, dimensions=(50, 200))
    try:
        child.expect(r"\(Pdb\+\+[^)]*\) ")
        child.sendline("p answer")
        child.expect("42")
        child.expect(r"\(Pdb\+\+[^)]*\) ")
        child.sendline("continue")
        child.expect("result: 42")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


@testing.trio_test
async def test_a_remote_actor_killed_there_is_reported_with_its_signal(ssh_host, reg):
    """Test that an actor SIGKILLed on the far host surfaces here as ActorCrashed
    naming the signal."""
    with pytest.raises(na.ActorCrashed, match=r"SIGKILL|signal 9"):
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("far", enable_modules=[__name__], host=launcher(ssh_host))
            pid = (await portal.run(where))["pid"]
            os.kill(pid, signal.SIGKILL)
            with trio.fail_after(20):
                await trio.sleep_forever()


def checksum(arr) -> float:
    return float(arr.sum())


def doubled(arr):
    return arr * 2


@testing.trio_test
async def test_numpy_arrays_cross_the_link_without_shared_memory(ssh_host, reg):
    """Test that large arrays travel to and from an actor on the far host: out-of-band
    data goes inline over the forwarded socket (no descriptor can cross it)."""
    np = pytest.importorskip("numpy")
    big = np.arange(8 * 1024 * 1024, dtype=np.float64)  # 64 MiB: over the shared-memory threshold
    async with na.open_nursery(**reg) as n:
        portal = await n.start_actor("far", enable_modules=[__name__], host=launcher(ssh_host))
        assert await portal.run(checksum, arr=big) == float(big.sum())
        back = await portal.run(doubled, arr=big[::2])
        assert np.array_equal(back, big[::2] * 2)
        await portal.cancel_actor()


@testing.trio_test
async def test_refused_authentication_fails_naming_the_host(ssh_host, reg, tmp_path):
    """Test that a key the host does not accept fails start_actor (never a prompt)."""
    key = tmp_path / "stranger"
    await trio.run_process(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)])
    config = tmp_path / "ssh_config"
    text = Path(ssh_host.ssh_config).read_text()
    config.write_text("\n".join(f"  IdentityFile {key}" if "IdentityFile" in ln else ln for ln in text.splitlines()))
    async with na.open_nursery(**reg) as n:
        with pytest.raises(na.LaunchError, match=ssh_host.name):
            await n.start_actor("far", host=na.SSHLauncher(ssh_host.name, ssh_config=str(config)))


@testing.trio_test
async def test_a_missing_package_is_named(ssh_host, reg):
    """Test that an interpreter there without notebook_actors is named as such."""
    import sys

    bare = os.path.join(sys.base_prefix, "bin", "python3")
    async with na.open_nursery(**reg) as n:
        with pytest.raises(na.LaunchError, match="not installed"):
            await n.start_actor("far", host=launcher(ssh_host, remote_python=bare))
