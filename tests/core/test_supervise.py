"""Actor nurseries: waiting for results, nesting, spawning rules, script functions."""

from __future__ import annotations

import ast
import os
import textwrap

import pytest
import trio

import notebook_actors as na
from notebook_actors import testing


async def slow_square(x: int, release: str) -> int:
    """Returns only once ``release`` exists: the test decides when it ends."""
    await trio.to_thread.run_sync(testing.wait_for_path, release, 60)
    return x * x


async def spawn_grandchildren(depth: int) -> list[str]:
    """Each level runs the next one in a new actor; returns the chain of names."""
    me = na.current_actor().name
    if depth == 0:
        return [me]
    async with na.open_nursery() as n:
        portal = await n.run_in_actor(spawn_grandchildren, name=f"level{depth - 1}", depth=depth - 1)
    return [me, *await portal.result()]


def test_block_end_waits_for_run_in_actor_results(reg, tmp_path):
    """Test that leaving the nursery block waits for run_in_actor functions to finish,
    and their results are on the portals afterwards."""
    release = tmp_path / "release"

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portals = [await n.run_in_actor(slow_square, name=f"sq{x}", x=x, release=str(release)) for x in range(3)]
            release.touch()  # they finish only after the body ended
        assert [await p.result() for p in portals] == [0, 1, 4]
        assert list(n.exitcodes.values()) == [0, 0, 0]

    trio.run(main)


def test_nesting_three_levels(reg):
    """Test that actors open their own nurseries: a chain root -> level2 -> level1 -> level0."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.run_in_actor(spawn_grandchildren, name="level2", depth=2)
        assert await portal.result() == ["level2", "level1", "level0"]

    trio.run(main)


def test_children_mapping_tracks_live_children(reg):
    """Test that nursery.children maps uids to portals while the children live."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("kid")
            assert n.children == {portal.channel.uid: portal}
            me = na.current_actor()
            assert portal.channel.uid in me.children
            await portal.cancel_actor()
        assert portal.channel.uid not in me.children
        assert n.children == {}

    trio.run(main)


def test_spawning_in_a_cancelled_nursery_is_refused(reg):
    """Test that start_actor after nursery.cancel() raises trio.ClosedResourceError
    naming the actor."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            await n.cancel()
            with pytest.raises(trio.ClosedResourceError, match="cannot spawn 'late'"):
                await n.start_actor("late")

    trio.run(main)


def test_root_kwargs_inside_a_runtime_are_ignored(reg):
    """Test that open_nursery(root kwargs) inside a running actor ignores them (as
    tractor does; its scripts pass arbiter_addr= everywhere) and that a name that is no
    option at all is a TypeError naming it."""

    async def main() -> None:
        async with na.open_root_actor(**reg) as actor:
            async with na.open_nursery(loglevel="info", arbiter_addr=("127.0.0.1", 1)):
                assert actor.loglevel is None
            with pytest.raises(TypeError, match="no_such_option"):
                async with na.open_nursery(no_such_option=1):
                    pass

    trio.run(main)


SCRIPT = textwrap.dedent(
    """
    # functions of a script's __main__ run in children and in grandchildren
    import os
    import sys

    import trio

    import notebook_actors as na


    def leaf(x):
        return {"x": x * 10, "pid": os.getpid(), "module": __name__}


    async def middle():
        async with na.open_nursery() as n:
            portal = await n.run_in_actor(leaf, x=4)
        return await portal.result()


    async def main():
        async with na.open_nursery(registry_addrs=[sys.argv[1]]) as n:
            portal = await n.run_in_actor(middle)
        print(await portal.result())


    if __name__ == "__main__":
        trio.run(main)
    """
)


def test_script_main_functions_run_in_children_and_grandchildren(tmp_path):
    """Test that run_in_actor works for functions defined in a script's __main__, two
    levels down (they load the script as __mp_main__, without running its main)."""
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    result = testing.run_script(str(script), testing.private_registry_addr())
    assert result.returncode == 0, result.stderr
    out = ast.literal_eval(result.stdout.strip())
    assert out["x"] == 40 and out["module"] == "__mp_main__"
    assert out["pid"] != os.getpid()


def test_script_without_main_guard_gets_a_hint(tmp_path):
    """Test that a script whose top level starts the runtime unguarded fails with an
    error that says to use `if __name__ == '__main__':` (every child re-runs it)."""
    script = tmp_path / "unguarded.py"
    script.write_text(SCRIPT.replace('if __name__ == "__main__":\n    trio.run(main)', "trio.run(main)"))
    result = testing.run_script(str(script), testing.private_registry_addr())
    assert result.returncode == 1
    assert "RemoteActorError" in result.stderr
    assert "if __name__ == '__main__':" in result.stderr


def test_functions_of_a_python_dash_m_program(tmp_path):
    """Test that a program started as `python -m pkg.main` can run its own functions
    in children, relative imports included (the child loads it by module name)."""
    import subprocess
    import sys

    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "helper.py").write_text("def double(x):\n    return 2 * x\n")
    (pkg / "main.py").write_text(
        SCRIPT.replace(
            "import notebook_actors as na\n", "import notebook_actors as na\nfrom .helper import double\n"
        ).replace('"x": x * 10', '"x": double(x)')
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "mypkg.main", testing.private_registry_addr()],
        capture_output=True,
        text=True,
        timeout=100,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    out = ast.literal_eval(result.stdout.strip())
    assert out["x"] == 8 and out["module"] == "__mp_main__"
