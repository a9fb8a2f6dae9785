"""Nested spawns with the fork server: a forked actor forks a template of its own at
birth (``_forkserver._fork_born_template``), so its first spawn is warm and the tree
stays real. Real templates, real forks, real processes."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time

import psutil
import pytest
import trio

import notebook_actors as na
from notebook_actors import _forkserver, _spawn, testing

MOD = __name__
#: a bound, not a delay: the checks return as soon as the processes are gone
GONE_WITHIN = 5.0


@pytest.fixture(autouse=True)
def born_templates(monkeypatch):
    """Born templates are asked for (a program has none by default; see
    test_a_program_asks_for_no_born_template_by_default)."""
    monkeypatch.setenv(_forkserver.NESTED_VAR, str(_forkserver.BORN_LIMIT_WANTED))


@pytest.fixture
def root_kw():
    return {"registry_addrs": [testing.private_registry_addr()], "start_method": "forkserver"}


def my_template() -> dict:
    """This actor's template as it is now, before any spawn of its own."""
    server = _forkserver._server
    pid = server.proc.pid if server is not None and server.alive() else None
    return {"me": os.getpid(), "template": pid}


def whoami() -> dict:
    return {"pid": os.getpid(), "ppid": os.getppid()}


async def spawn_child() -> dict:
    born = my_template()["template"]
    async with na.open_nursery() as n:
        portal = await n.run_in_actor(whoami, name="grandchild")
        child = await portal.result()
    templates = [c.pid for c in psutil.Process().children() if testing.is_fork_server(c)]
    return {"me": os.getpid(), "born": born, "child": child, "templates": templates}


def gone_for_good(pids: list[int], timeout: float = GONE_WITHIN) -> list[int]:
    """Wait until none of ``pids`` exists, not even as a zombie; the rest."""
    end = time.monotonic() + timeout
    pending = list(pids)
    while pending and time.monotonic() < end:
        pending = [pid for pid in pending if psutil.pid_exists(pid)]
        time.sleep(0.02)
    return [pid for pid in pending if psutil.pid_exists(pid)]


def test_a_forked_actor_is_born_with_its_own_template(root_kw):
    """Test that an actor forked by the template has a template before its first
    spawn, that the template is a child process of that actor, and a fork server."""

    async def main():
        async with na.open_nursery(**root_kw) as n:
            portal = await n.start_actor("owner", enable_modules=[MOD])
            info = await portal.run(my_template)
            template = info["template"]
            assert template is not None, "the actor had no template before its first spawn"
            proc = psutil.Process(template)
            parent, is_server = proc.ppid(), testing.is_fork_server(proc)
            await n.cancel()
        return info, parent, is_server

    info, parent, is_server = trio.run(main)
    assert parent == info["me"]
    assert is_server
    assert info["me"] != os.getpid()


def test_the_grandchild_is_forked_by_the_born_template_as_its_actor_s_child(root_kw):
    """Test that root -> a -> b makes b a child process of a, through the template a
    was born with (no second template started)."""

    async def main():
        async with na.open_nursery(**root_kw) as n:
            portal = await n.run_in_actor(spawn_child, name="a", enable_modules=[MOD])
            return await portal.result()

    result = trio.run(main)
    assert result["born"] is not None
    assert result["child"]["ppid"] == result["me"]
    assert result["child"]["pid"] not in (result["me"], result["born"])
    assert result["templates"] == [result["born"]], "a's first spawn started another template"


def test_the_born_template_ends_and_is_reaped_when_its_actor_ends(root_kw):
    """Test that the template an actor was born with exits, reaped, when the actor
    ends normally (cancelled by its parent), after its own spawn too."""

    async def main():
        async with na.open_nursery(**root_kw) as n:
            idle = await n.start_actor("idle", enable_modules=[MOD])
            busy = await n.start_actor("busy", enable_modules=[MOD])
            idle_info = await idle.run(my_template)
            busy_info = await busy.run(spawn_child)
            await n.cancel()
        return idle_info, busy_info

    idle_info, busy_info = trio.run(main)
    templates = [idle_info["template"], busy_info["born"]]
    assert None not in templates
    # Reaped by its owner, before the owner exited (and so before we reaped the owner):
    # gone now, without waiting. A template left to exit after its owner would be an
    # orphan here, or a zombie until an init reaped it.
    assert [pid for pid in templates if psutil.pid_exists(pid)] == []
    assert gone_for_good([idle_info["me"], busy_info["me"]]) == []


def test_born_templates_are_bounded_per_spawner(root_kw, monkeypatch):
    """Test that only $NOTEBOOK_ACTORS_FORKSERVER_NESTED of a spawner's live children
    get a born template (here 2 of 3), that the rest spawn through a template of their
    own started then, and that the count frees up as the children are reaped."""
    monkeypatch.setenv(_forkserver.NESTED_VAR, "2")

    async def main():
        async with na.open_nursery(**root_kw) as n:
            portals = [await n.start_actor(f"c{i}", enable_modules=[MOD]) for i in range(3)]
            infos = [await p.run(my_template) for p in portals]
            late = await portals[2].run(spawn_child)
            await n.cancel()
        return infos, late, _forkserver._born_live

    infos, late, live_after = trio.run(main)
    assert [info["template"] is not None for info in infos] == [True, True, False]
    assert late["born"] is None
    assert late["child"]["ppid"] == late["me"]
    assert len(late["templates"]) == 1
    assert live_after == 0


def test_nested_zero_gives_no_born_template(root_kw, monkeypatch):
    """Test that NOTEBOOK_ACTORS_FORKSERVER_NESTED=0 forks actors without a template."""
    monkeypatch.setenv(_forkserver.NESTED_VAR, "0")

    async def main():
        async with na.open_nursery(**root_kw) as n:
            portal = await n.run_in_actor(my_template)
            return await portal.result()

    assert trio.run(main)["template"] is None


@pytest.mark.parametrize("bad", ["-1", "many"])
def test_a_bad_nested_limit_is_a_one_line_error(root_kw, monkeypatch, bad):
    """Test that a malformed NOTEBOOK_ACTORS_FORKSERVER_NESTED is named in the error."""
    monkeypatch.setenv(_forkserver.NESTED_VAR, bad)

    async def main():
        async with na.open_nursery(**root_kw) as n:
            await n.run_in_actor(my_template)

    with pytest.raises(ValueError, match=f"NOTEBOOK_ACTORS_FORKSERVER_NESTED must be .*{bad!r}"):
        trio.run(main)


async def spawn_child_from_asyncio() -> dict:
    import asyncio

    from notebook_actors import to_asyncio

    async def nothing() -> None:
        await asyncio.sleep(0)

    await to_asyncio.run_task(nothing)
    return await spawn_child()


def test_an_asyncio_infected_actor_spawns_through_its_born_template(root_kw):
    """Test that an actor running trio as a guest of asyncio (infect_asyncio) gets a
    born template too (forked before its loop started) and spawns its own child."""

    async def main():
        async with na.open_nursery(**root_kw) as n:
            portal = await n.run_in_actor(
                spawn_child_from_asyncio, name="aio", enable_modules=[MOD], infect_asyncio=True
            )
            return await portal.result()

    result = trio.run(main)
    assert result["born"] is not None
    assert result["child"]["ppid"] == result["me"]
    assert result["templates"] == [result["born"]]


# --- kill -9 of the middle actor, under a stand-in init that reaps orphans ------------

TREE_SCRIPT = textwrap.dedent(
    """
    # root -> middle -> leaf, forked; prints the pids (and middle's template), waits
    import json
    import os
    import sys

    import psutil
    import trio

    import notebook_actors as na
    from notebook_actors import _forkserver, testing


    @na.context
    async def middle(ctx):
        template = _forkserver._server.proc.pid
        async with na.open_nursery() as n:
            leaf = await n.start_actor("leaf", enable_modules=["os"])
            pid = await leaf.run("os", "getpid")
            templates = [c.pid for c in psutil.Process().children() if testing.is_fork_server(c)]
            await ctx.started({"middle": os.getpid(), "template": template, "templates": templates, "leaf": pid})
            await trio.sleep_forever()


    async def main():
        try:
            async with na.open_nursery(registry_addrs=[sys.argv[1]], start_method="forkserver") as n:
                portal = await n.start_actor("middle", enable_modules=["__main__"])
                async with portal.open_context(middle) as (ctx, pids):
                    print("TREE", json.dumps({"root": os.getpid(), **pids}), flush=True)
                    await trio.sleep_forever()
        except Exception as exc:  # the middle's crash: stay, so its reaping can be seen
            print("CRASHED", type(exc).__name__, flush=True)
        await trio.sleep_forever()


    if __name__ == "__main__":
        trio.run(main)
    """
)

#: A stand-in init (PR_SET_CHILD_SUBREAPER: it adopts the orphans of its descendants)
#: that reaps them at once and says whom it reaped: the container's own init may reap
#: late (about once a second here), or never.
INIT = textwrap.dedent(
    """
    import ctypes, os, subprocess, sys
    ctypes.CDLL(None).prctl(36, 1)
    child = subprocess.Popen([sys.executable, *sys.argv[1:]])
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:  # nothing left to reap
            break
        print("REAPED", pid, flush=True)
    """
)


def test_kill_9_of_the_middle_actor_leaves_no_template_nor_zombie(tmp_path):
    """Test that SIGKILL of a forked actor that spawned ends its born template and
    its child (no orphan keeps running), that its parent reaps it, and that nothing of
    it is left even as a zombie."""
    script = tmp_path / "tree.py"
    script.write_text(TREE_SCRIPT)
    errors = tmp_path / "stderr.txt"
    with errors.open("w") as err:
        init = subprocess.Popen(
            [sys.executable, "-c", INIT, str(script), testing.private_registry_addr()],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            start_new_session=True,
        )
    lines, reader = _lines_of(init.stdout)
    pids: dict = {}
    try:
        try:
            line = lines.get(timeout=60)
        except queue.Empty:
            line = ""
        assert line.startswith("TREE "), line + errors.read_text()
        pids = json.loads(line[5:])
        assert pids["templates"] == [pids["template"]]
        assert psutil.Process(pids["template"]).ppid() == pids["middle"]
        assert psutil.Process(pids["leaf"]).ppid() == pids["middle"]
        assert psutil.Process(pids["middle"]).ppid() == pids["root"]
        os.kill(pids["middle"], signal.SIGKILL)
        orphans = {pids["template"], pids["leaf"]}
        reaped: set[int] = set()
        end = time.monotonic() + GONE_WITHIN
        while not orphans <= reaped:
            try:
                got = lines.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                left = {pid for pid in orphans - reaped if testing.alive(pid)}
                raise AssertionError(
                    f"not reaped within {GONE_WITHIN} s: {orphans - reaped} (still running: {left})"
                ) from None
            if got.startswith("REAPED "):
                reaped.add(int(got.split()[1]))
        # the middle reaped by the root, its orphans by the stand-in init: not even a
        # zombie of any of them is left
        assert gone_for_good([pids["middle"], *orphans]) == [], pids
    finally:
        try:  # the tree, also when it never printed its pids
            family = [p.pid for p in psutil.Process(init.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            family = []
        testing.kill_all([*(p for p in pids.values() if isinstance(p, int)), *family])
        try:  # it reaps what is left (the root's template goes with the root), then ends
            init.wait(timeout=GONE_WITHIN)
        except subprocess.TimeoutExpired:
            init.kill()
            init.wait()
        reader.join(timeout=GONE_WITHIN)  # the pipe's last writers are gone: it ends


def _lines_of(stream) -> tuple[queue.Queue, threading.Thread]:
    """The lines of ``stream`` as they come, read by a thread (a read with a bound),
    which closes it at its end."""
    lines: queue.Queue = queue.Queue()

    def pump() -> None:
        with stream:
            for line in stream:
                lines.put(line)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return lines, thread


def test_a_program_asks_for_no_born_template_by_default(root_kw, monkeypatch):
    """Test that without $NOTEBOOK_ACTORS_FORKSERVER_NESTED a program's forked actors
    have no template of their own (a born one costs every spawn; a flat fan-out is the
    common program), and that warm_up(nested=True), the kernel's call, asks for them."""
    monkeypatch.delenv(_forkserver.NESTED_VAR)

    async def main() -> tuple[dict, dict]:
        async with na.open_nursery(**root_kw) as n:
            plain = await (await n.run_in_actor(my_template, name="plain")).result()
            await _spawn.warm_up("forkserver", nested=True)
            born = await (await n.run_in_actor(my_template, name="born")).result()
        return plain, born

    plain, born = trio.run(main)
    assert plain["template"] is None
    assert born["template"] is not None
    assert os.environ[_forkserver.NESTED_VAR] == str(_forkserver.BORN_LIMIT_WANTED)
