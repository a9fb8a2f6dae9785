"""Zombie safety: kill -9 anywhere in a tree leaves no live descendants; a child
whose parent vanished exits by itself; children run in their own session."""

from __future__ import annotations

import json
import os
import signal
import textwrap

import pytest
import trio

import notebook_actors as na
from notebook_actors import testing

#: a bound, not a delay: the checks return as soon as the processes are gone
GONE_WITHIN = 3.0

TREE_SCRIPT = textwrap.dedent(
    """
    # root -> middle -> 2 leaves; prints the tree's pids, then waits forever
    import json
    import os
    import sys

    import trio

    import notebook_actors as na


    @na.context
    async def middle(ctx):
        async with na.open_nursery() as n:
            leaves = [await n.start_actor(f"leaf{i}", enable_modules=["os"]) for i in range(2)]
            pids = [await p.run("os", "getpid") for p in leaves]
            await ctx.started([os.getpid(), *pids])
            await trio.sleep_forever()


    async def main():
        async with na.open_nursery(registry_addrs=[sys.argv[1]], start_method=sys.argv[2]) as n:
            portal = await n.start_actor("middle", enable_modules=["__main__"])
            async with portal.open_context(middle) as (ctx, pids):
                print("TREE", json.dumps({"root": os.getpid(), "middle": pids[0], "leaves": pids[1:]}), flush=True)
                await trio.sleep_forever()


    if __name__ == "__main__":
        trio.run(main)
    """
)


@pytest.fixture
def tree(tmp_path, request):
    """Start the tree script; yield (process, pids by role); kill what is left."""
    script = tmp_path / "tree.py"
    script.write_text(TREE_SCRIPT)
    proc = testing.start_script(str(script), testing.private_registry_addr(), request.param)
    started: list[int] = []
    try:
        line = proc.stdout.readline()
        assert line.startswith("TREE "), line + proc.communicate(timeout=30)[1]
        pids = json.loads(line[5:])
        started = [pids["root"], pids["middle"], *pids["leaves"]]
        yield proc, pids
    finally:
        testing.kill_all([*started, proc.pid])
        proc.communicate(timeout=30)


@pytest.mark.parametrize("tree", ["trio", "mp_spawn", "mp_forkserver", "forkserver"], indirect=True)
def test_kill_9_of_the_root_leaves_no_descendants(tree):
    """Test that SIGKILL of the root ends every descendant (no cancel message can be
    sent: the children notice their parent's death by themselves)."""
    _proc, pids = tree
    os.kill(pids["root"], signal.SIGKILL)
    survivors = testing.wait_until_gone([pids["middle"], *pids["leaves"]], timeout=GONE_WITHIN)
    assert survivors == []


@pytest.mark.parametrize("tree", ["trio"], indirect=True)
def test_kill_9_of_a_middle_actor(tree):
    """Test that SIGKILL of a middle actor ends its children, and the root reports the
    crash as ActorCrashed naming SIGKILL, then exits."""
    proc, pids = tree
    os.kill(pids["middle"], signal.SIGKILL)
    assert testing.wait_until_gone(pids["leaves"], timeout=GONE_WITHIN) == []
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert "ActorCrashed" in err and "SIGKILL" in err


@pytest.mark.parametrize("tree", ["trio"], indirect=True)
def test_children_run_in_their_own_session(tree):
    """Test that each actor leads its own session, so a terminal's (or a kernel's)
    SIGINT to the root's process group reaches children only through the runtime."""
    _proc, pids = tree
    root_sid = os.getsid(pids["root"])
    for pid in [pids["middle"], *pids["leaves"]]:
        assert os.getsid(pid) == pid != root_sid


def test_child_exits_when_its_parent_channel_closes():
    """Test that a child whose parent's channel closes (the parent still alive) exits
    by itself, gracefully (exit code 0)."""

    async def main() -> None:
        async with na.open_nursery(registry_addrs=[testing.private_registry_addr()]) as n:
            portal = await n.start_actor("orphan")
            assert await portal.run_from_ns("self", "ping") == "pong"
            child = next(iter(n._children.values()))
            await portal.channel._stream.aclose()  # as if the parent vanished
            with trio.fail_after(30):
                await child.exited.wait()
            assert child.exitcode == 0
            assert not child.asked_to_stop

    trio.run(main)
