"""The runtime's public face: open_root_actor, run, run_daemon, current_actor,
is_root_process, enable_modules, logging."""

from __future__ import annotations

import logging
import os
import signal
import sys
import textwrap

import pytest
import trio

import notebook_actors as na
from notebook_actors import testing


def whoami() -> dict:
    actor = na.current_actor()
    return {
        "name": actor.name,
        "uid": list(actor.uid),
        "pid": os.getpid(),
        "is_root": na.is_root_process(),
        "loglevel": actor.loglevel,
        "log_level": logging.getLogger("notebook_actors").getEffectiveLevel(),
    }


def not_enabled() -> str:
    return "should never run"


async def nested_root_attempt() -> str:
    try:
        async with na.open_root_actor():
            pass
    except RuntimeError as exc:
        return str(exc)
    return "no error"


def test_current_actor_outside_runtime_raises():
    """Test that current_actor() outside any runtime raises NoRuntime saying how to start one."""
    with pytest.raises(na.NoRuntime, match="open_root_actor"):
        na.current_actor()
    assert not na.is_root_process()


def test_open_nursery_as_plain_with_raises():
    """Test that using open_nursery() as a plain `with` raises RuntimeError showing `async with`."""
    with pytest.raises(RuntimeError, match="async with open_nursery"):
        with na.open_nursery():
            pass


def test_run_returns_the_result(reg):
    """Test that run() starts a root actor, returns the function's result and cleans up."""

    async def main(x: int) -> tuple:
        actor = na.current_actor()
        return x * 2, actor.name, na.is_root_process()

    assert na.run(main, 21, name="rooty", **reg) == (42, "rooty", True)
    with pytest.raises(na.NoRuntime):
        na.current_actor()


def test_root_actor_hosts_the_registry(reg):
    """Test that the root hosts its registry and has a uid of (name, hex)."""

    async def main() -> None:
        async with na.open_root_actor(**reg) as actor:
            assert actor is na.current_actor()
            assert actor.is_arbiter
            name, uuid_hex = actor.uid
            assert name == "root" and int(uuid_hex, 16) >= 0
            assert actor.accept_addr and actor.accept_addr.startswith("uds:")
            assert not actor.is_infected_aio()

    trio.run(main)


def test_second_root_in_one_process_raises(reg):
    """Test that opening a second root actor inside a running one raises RuntimeError."""

    async def main() -> None:
        async with na.open_root_actor(**reg):
            assert "already runs" in await nested_root_attempt()

    trio.run(main)


def test_child_sees_its_own_actor(reg):
    """Test that current_actor()/is_root_process() in a child describe the child."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.run_in_actor(whoami, name="kid")
            info = await portal.result()
        assert info["name"] == "kid"
        assert tuple(info["uid"]) == portal.channel.uid
        assert info["pid"] != os.getpid()
        assert info["is_root"] is False

    trio.run(main)


def test_enable_modules_refuses_other_modules(reg):
    """Test that calling a function whose module is not enabled raises ModuleNotExposed
    in the caller, boxed, with a message that says what to pass."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("strict", enable_modules=["json"])
            assert await portal.run("json", "dumps", obj=[1]) == "[1]"
            with pytest.raises(na.RemoteActorError) as info:
                await portal.run(not_enabled)
            err = info.value
            assert err.type is na.ModuleNotExposed
            assert f"enable_modules=[{__name__!r}]" in str(err)
            assert err.src_uid == portal.channel.uid
            with pytest.raises(na.RemoteActorError) as info:
                await portal.run("os", "getcwd")
            assert info.value.type is na.ModuleNotExposed
            assert "enable_modules=['os']" in str(info.value)
            await portal.cancel_actor()

    trio.run(main)


def test_self_namespace_offers_only_listed_methods(reg):
    """Test that run_from_ns('self', ...) reaches the actor's RPC methods and nothing else."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("selfish")
            assert await portal.run_from_ns("self", "ping") == "pong"
            with pytest.raises(na.RemoteActorError) as info:
                await portal.run_from_ns("self", "_dispatch")
            assert info.value.type is na.ModuleNotExposed
            assert "ping" in str(info.value)
            await portal.cancel_actor()

    trio.run(main)


@pytest.mark.parametrize("loglevel", [None, "debug"])
def test_loglevel_is_per_actor_and_quiet_by_default(reg, loglevel):
    """Test that a child logs at its own loglevel, and only warnings by default."""

    async def main() -> dict:
        async with na.open_nursery(**reg) as n:
            portal = await n.run_in_actor(whoami, loglevel=loglevel)
            return await portal.result()

    info = trio.run(main)
    assert info["loglevel"] == loglevel
    expected = logging.DEBUG if loglevel else logging.WARNING
    assert info["log_level"] == expected


DAEMON_SCRIPT = textwrap.dedent(
    """
    import sys
    import notebook_actors as na

    try:
        na.run_daemon(["json"], name="daemon", registry_addrs=[sys.argv[1]])
    except KeyboardInterrupt:
        print("KeyboardInterrupt", flush=True)
        raise
    """
)


def test_run_daemon_serves_until_sigint(tmp_path, reg):
    """Test that run_daemon() serves RPC to other programs and that SIGINT ends it
    with KeyboardInterrupt, leaving no process behind."""
    script = tmp_path / "daemon.py"
    script.write_text(DAEMON_SCRIPT)
    addr = reg["registry_addrs"][0]
    proc = testing.start_script(str(script), addr)
    try:

        async def main() -> str:
            # a second program finds the daemon through its registry, calls it
            with trio.fail_after(30):
                async with na.open_root_actor(name="client", registry_addrs=[addr]) as me:
                    assert not me.is_arbiter
                    async with na.wait_for_actor("daemon") as portal:
                        return await portal.run("json", "dumps", obj={"a": 1})

        assert testing.wait_for_path(addr[len("uds:") :], timeout=30), proc.communicate(timeout=5)
        assert trio.run(main) == '{"a": 1}'
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        testing.kill_all([proc.pid])
    assert proc.returncode != 0
    assert "KeyboardInterrupt" in out, err
    assert "Traceback" in err and err.rstrip().endswith("KeyboardInterrupt")
    assert not os.path.exists(addr[len("uds:") :])


if sys.platform != "linux":  # pragma: no cover
    pytestmark = pytest.mark.skip("the runtime's zombie safety is Linux-specific")
