"""Kernel-level tests of the actor-tree widget: a real kernel through jupyter_client,
real actors, and the widget's comm messages as the front end would receive them."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import KernelManager

from notebook_actors.testing import private_registry_addr

HERE = Path(__file__).parent


class KernelSession:
    """One kernel; records every widget comm message with the execution it arrived in."""

    def __init__(self) -> None:
        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(cwd=str(HERE))
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)
        self.states: dict[str, dict[str, Any]] = {}  # comm id -> latest widget state
        self.updates: list[tuple[str | None, str, dict[str, Any]]] = []  # (running msg id, comm, state)
        self.closed: set[str] = set()
        self.running: str | None = None

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=False)

    def _record(self, msg: dict[str, Any]) -> None:
        kind, content = msg["msg_type"], msg["content"]
        parent = msg.get("parent_header", {}).get("msg_id")
        if kind == "status" and parent:
            self.running = parent if content["execution_state"] == "busy" else None
        elif kind == "comm_open":
            self.states[content["comm_id"]] = dict(content["data"].get("state", {}))
        elif kind == "comm_msg" and content["data"].get("method") == "update":
            state = content["data"]["state"]
            self.states.setdefault(content["comm_id"], {}).update(state)
            self.updates.append((self.running, content["comm_id"], state))
        elif kind == "comm_close":
            self.closed.add(content["comm_id"])

    def run(self, code: str, timeout: float = 90) -> tuple[str, list[str]]:
        """Execute ``code``; return (its msg id, its stdout lines); raise its error."""
        msg_id = self.kc.execute(code)
        out: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            msg = self.kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            self._record(msg)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                out.extend(msg["content"]["text"].splitlines())
            elif msg["msg_type"] == "error":
                raise AssertionError("cell failed:\n" + "\n".join(msg["content"]["traceback"]))
            elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return msg_id, out

    def pump_until(self, predicate: Callable[[], bool], timeout: float = 60) -> None:
        """Read iopub (no cell running) until ``predicate()`` holds; ``timeout`` is a hang guard."""
        deadline = time.monotonic() + timeout
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("timed out waiting for the widget's state")
            try:
                self._record(self.kc.get_iopub_msg(timeout=left))
            except Exception:  # queue.Empty
                continue

    def send_to_widget(self, comm_id: str, content: dict[str, Any]) -> None:
        """What a button click sends: a custom comm message to the kernel."""
        msg = self.kc.session.msg("comm_msg", {"comm_id": comm_id, "data": {"method": "custom", "content": content}})
        self.kc.shell_channel.send(msg)


def tree_widgets(ks: KernelSession) -> list[str]:
    return [cid for cid, st in ks.states.items() if st.get("_view_name") == "AnyView" and "tree" in st]


def node_named(state: dict[str, Any], name: str) -> dict[str, Any] | None:
    found = [n for n in state.get("tree", {}).get("nodes", {}).values() if n["name"] == name]
    return found[0] if found else None


@pytest.fixture
def kernel():
    ks = KernelSession()
    try:
        yield ks
    finally:
        try:
            ks.run("if 'ga' in globals():\n    await ga.aclose()", timeout=60)
        finally:
            ks.close()


SETUP = """
import asyncio, sys
sys.path.insert(0, {here!r})
import tree_actors
from notebook_actors import to_asyncio, _tree
from notebook_actors.widgets import ActorTreeWidget
ga = to_asyncio.start_guest_actor(registry_addrs=[{reg!r}])
await ga.wait_started()
w = ActorTreeWidget(interval=0.2)
display(w)
display(w)

async def wait_tree(pred, timeout=60):
    async def loop():
        while not pred(w.tree.get("nodes", {{}})):
            await asyncio.sleep(0.05)
    await asyncio.wait_for(loop(), timeout)

def named(nodes, name):
    return next((n for n in nodes.values() if n["name"] == name), None)
"""


def test_widget_follows_the_tree_in_a_kernel(kernel):
    """Test that the widget's comm messages follow actors as they spawn, stream, crash,
    are cancelled and killed from its buttons, while cells await and while idle."""
    ks = kernel
    ks.run(SETUP.format(here=str(HERE), reg=private_registry_addr()))
    [comm] = tree_widgets(ks)
    ks.pump_until(lambda: node_named(ks.states[comm], "root") is not None)
    root = node_named(ks.states[comm], "root")
    assert root["parent"] is None and root["state"] in ("idle", "running")

    # Spawning and streaming: the cell awaits until the kernel-side widget sees the leaf
    # streaming; the front end must have received that update while the cell ran.
    cell, _ = ks.run(
        "worker = await ga.run(lambda: ga._nursery.start(tree_actors.keep_tree))\n"
        "await wait_tree(lambda ns: named(ns, 'leaf') and any(c['sent'] >= 5 for c in named(ns, 'leaf')['calls']))"
    )
    during = [st for running, cid, st in ks.updates if running == cell and cid == comm and "tree" in st]
    assert any(node_named(st, "leaf") and node_named(st, "leaf")["state"] == "streaming" for st in during)
    state = ks.states[comm]
    relay, leaf, worker = (node_named(state, n) for n in ("relay", "leaf", "worker"))
    assert leaf["parent"] == relay["key"] and relay["parent"] == root["key"] == worker["parent"]
    assert worker["state"] == "idle" and worker["pid"] and worker["rss"] > 0

    # A crash stands out, with its error.
    _, out = ks.run("print(await ga.run(tree_actors.crash_one))")
    assert "widget test boom" in out[0]
    ks.pump_until(lambda: (node_named(ks.states[comm], "crasher") or {}).get("state") == "crashed")
    crasher = node_named(ks.states[comm], "crasher")
    assert crasher["error"] == "ValueError: widget test boom"  # a sentence, no uid tuple
    frames = [line for line in crasher["traceback"].splitlines() if line.startswith("  File ")]
    assert len(frames) == 1 and "tree_actors.py" in frames[0] and ", in boom" in frames[0]

    # The kernel side beats, so a front end can tell a quiet tree from a dead kernel.
    beat = ks.states[comm].get("beat", 0)
    assert ks.states[comm]["status"]["beat_interval"] > 0
    ks.pump_until(lambda: ks.states[comm].get("beat", 0) >= beat + 2)

    # Buttons: an actor that is gone says so; cancel ends the worker; kill crashes the relay.
    ks.send_to_widget(comm, {"type": "action", "action": "cancel", "key": "ghost.0123", "id": 1})
    ks.pump_until(lambda: ks.states[comm].get("last_action", {}).get("id") == 1)
    assert ks.states[comm]["last_action"]["ok"] is False
    assert "is gone" in ks.states[comm]["last_action"]["message"]

    ks.send_to_widget(comm, {"type": "action", "action": "cancel", "key": worker["key"], "id": 2})
    ks.pump_until(lambda: ks.states[comm].get("last_action", {}).get("id") == 2)
    assert ks.states[comm]["last_action"]["ok"] is True, ks.states[comm]["last_action"]
    ks.pump_until(lambda: node_named(ks.states[comm], "worker") is None)

    ks.send_to_widget(comm, {"type": "action", "action": "kill", "key": relay["key"], "id": 3})
    ks.pump_until(lambda: (node_named(ks.states[comm], "relay") or {}).get("state") == "crashed")
    assert node_named(ks.states[comm], "relay")["exitcode"] == -9

    ks.send_to_widget(comm, {"type": "action", "action": "cancel", "key": relay["key"], "id": 4})
    ks.pump_until(lambda: ks.states[comm].get("last_action", {}).get("id") == 4)
    assert "has already crashed(SIGKILL)" in ks.states[comm]["last_action"]["message"]
    # restart is offered on a crashed actor; here no supervisor that could respawn it is installed
    ks.send_to_widget(comm, {"type": "action", "action": "restart", "key": relay["key"], "id": 5})
    ks.pump_until(lambda: ks.states[comm].get("last_action", {}).get("id") == 5)
    answer = ks.states[comm]["last_action"]
    assert answer["ok"] is False and "register_action('restart'" in answer["message"]

    # A second widget shares the first one's watch (same snapshots), and outlives it.
    _, out = ks.run(
        "w2 = ActorTreeWidget(interval=0.2)\n"
        "async def joined():\n"
        "    while w2._hub is None:\n"
        "        await asyncio.sleep(0.02)\n"
        "await asyncio.wait_for(joined(), 30)\n"
        "print(w2._hub is w._hub, w2.tree == w.tree)\n"
        "w.close()\n"
        "print(w2._hub.scope.cancel_called)\n"
        "w2.close()"
    )
    assert out == ["True True", "False"]

    # Closing stops the updates and the feeds below the root.
    _, out = ks.run(
        "w.close()\n"
        "print(w.statistics())\n"
        "async def no_feeds():\n"
        "    actor = ga.actor\n"
        "    chans = [c for cs in actor._peers.values() for c in cs]\n"
        "    return sum(1 for c in chans for x in c.calls.values() if x.fn_name == _tree.FEED_CALL)\n"
        "async def wait_no_feeds():\n"
        "    while await ga.run(no_feeds):\n"
        "        await asyncio.sleep(0.05)\n"
        "await asyncio.wait_for(wait_no_feeds(), 30)\n"
        "print('watch stopped', w._hub.scope.cancel_called)"
    )
    assert out[-1] == "watch stopped True"
    assert comm in ks.closed


def test_actor_tree_magic_shows_actor_cells(tmp_path):
    """Test that ``%actor tree`` (with ``%load_ext notebook_actors``) displays the widget,
    and that an ``%%actor`` cell's actor reports itself in it."""
    import os

    os.environ["NOTEBOOK_ACTORS_REGISTRY"] = private_registry_addr()  # inherited by the kernel
    try:
        ks = KernelSession()
    finally:
        del os.environ["NOTEBOOK_ACTORS_REGISTRY"]
    try:
        ks.run("%load_ext notebook_actors")
        _, out = ks.run("%%actor worker\nprint('worker says hi')")
        assert out == ["worker says hi"]
        ks.run("%actor tree")
        [comm] = tree_widgets(ks)
        ks.pump_until(lambda: ((node_named(ks.states[comm], "worker") or {}).get("rss") or 0) > 0)
        worker = node_named(ks.states[comm], "worker")
        root = ks.states[comm]["tree"]["nodes"][worker["parent"]]
        assert root["parent"] is None and root["pid"] != worker["pid"]

        # The restart button respawns the notebook actor: a new process, a fresh namespace.
        ks.run("%%actor worker\nmarker = 1")
        ks.send_to_widget(comm, {"type": "action", "action": "restart", "key": worker["key"], "id": 1})
        ks.pump_until(lambda: ks.states[comm].get("last_action", {}).get("id") == 1)
        assert "restarted actor worker" in ks.states[comm]["last_action"]["message"]
        _, out = ks.run("%%actor worker\nimport os\nprint(os.getpid(), 'marker' in dir())")
        new_pid, has_old_name = out[0].split()
        assert int(new_pid) != worker["pid"] and has_old_name == "False"

        # A running cell shows as the actor's activity (and state running) while it runs.
        ks.run("%%actor --bg worker\nimport trio\nawait trio.sleep(60)")
        ks.pump_until(
            lambda: ((node_named(ks.states[comm], "worker") or {}).get("activity") or "").startswith("cell [")
        )
        worker = node_named(ks.states[comm], "worker")
        assert worker["state"] == "running" and worker["activity_since"] > worker["started"]
        # the cell's own output stream is plumbing: neither side lists it, and the kernel
        # is not "streaming" because a cell runs in one of its actors
        kernel_node = ks.states[comm]["tree"]["nodes"][worker["parent"]]
        assert kernel_node["state"] == "idle" and kernel_node["calls"] == worker["calls"] == []

        # The stack button shows where it is stuck, also in blocking code.
        ks.run(
            "%%actor --bg stuck\nimport time\n\ndef blocked_right_here():\n    time.sleep(60)\n\nblocked_right_here()"
        )
        # (blocked, it cannot describe itself: its parent's record gives the pid)
        ks.pump_until(lambda: (node_named(ks.states[comm], "stuck") or {}).get("pid"))
        # the kernel knows which cell it sent there: the doing column is not empty
        ks.pump_until(lambda: ((node_named(ks.states[comm], "stuck") or {}).get("activity") or "").startswith("cell ["))
        stuck = node_named(ks.states[comm], "stuck")
        assert stuck["state"] == "running" and stuck["activity_since"]
        for attempt in range(10, 30):  # until the cell has reached the call (a dump per try)
            ks.send_to_widget(comm, {"type": "action", "action": "stack", "key": stuck["key"], "id": attempt})
            ks.pump_until(lambda: ks.states[comm].get("last_action", {}).get("id") == attempt, timeout=30)  # noqa: B023
            answer = ks.states[comm]["last_action"]
            assert answer["ok"] is True, answer
            if "in blocked_right_here" in answer["text"]:
                break
        assert "in blocked_right_here" in answer["text"] and str(stuck["pid"]) in answer["text"]
        ks.run("%actor kill stuck")

        # Killed, it crashes; restart is offered on the crashed actor and respawns it,
        # and the new row replaces the crashed one.
        ks.send_to_widget(comm, {"type": "action", "action": "kill", "key": worker["key"], "id": 2})
        ks.pump_until(lambda: (node_named(ks.states[comm], "worker") or {}).get("state") == "crashed")
        ks.send_to_widget(comm, {"type": "action", "action": "restart", "key": worker["key"], "id": 3})
        ks.pump_until(lambda: ks.states[comm].get("last_action", {}).get("id") == 3)
        assert "restarted actor worker" in ks.states[comm]["last_action"]["message"], ks.states[comm]["last_action"]
        ks.pump_until(lambda: (node_named(ks.states[comm], "worker") or {}).get("state") == "idle")
        workers = [n for n in ks.states[comm]["tree"]["nodes"].values() if n["name"] == "worker"]
        assert len(workers) == 1 and workers[0]["pid"] != worker["pid"]
    finally:
        try:
            ks.run("%actor stop", timeout=60)
        finally:
            ks.close()


def _late_output(ks: KernelSession, msg_id: str, timeout: float = 60) -> str:
    """The stream text a returned (--bg) cell ``msg_id`` gets next."""
    deadline = time.monotonic() + timeout
    while True:
        msg = ks.kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        ks._record(msg)
        if msg.get("parent_header", {}).get("msg_id") == msg_id and msg["msg_type"] == "stream":
            return msg["content"]["text"]


@pytest.mark.parametrize("action", ["cancel", "kill"])
def test_a_button_that_ends_an_actor_ends_its_running_cell_in_one_line(tmp_path, action):
    """Test that cancel / kill from the tree widget, under a cell running in that actor,
    end that cell with one line saying what ended it (a --bg cell: in its own output)."""
    import os

    os.environ["NOTEBOOK_ACTORS_REGISTRY"] = private_registry_addr()  # inherited by the kernel
    try:
        ks = KernelSession()
    finally:
        del os.environ["NOTEBOOK_ACTORS_REGISTRY"]
    try:
        ks.run("%load_ext notebook_actors")
        ks.run("%actor tree")
        [comm] = tree_widgets(ks)
        started = tmp_path / "started"
        bg, _ = ks.run(f"%%actor --bg victim\nopen({str(started)!r}, 'w').close()\nawait trio.sleep_forever()")
        ks.pump_until(lambda: started.exists() and (node_named(ks.states[comm], "victim") or {}).get("pid"))
        victim = node_named(ks.states[comm], "victim")
        ks.send_to_widget(comm, {"type": "action", "action": action, "key": victim["key"], "id": 1})
        text = _late_output(ks, bg)
        said = {"cancel": "was cancelled by you", "kill": "was killed (SIGKILL) by you"}[action]
        assert f"actor 'victim' {said}" in text and "while running this cell" in text, text
        assert len(text.strip().splitlines()) == 1, text
        _, out = ks.run("%%actor victim\nprint('back')")
        assert out == ["back"]
    finally:
        try:
            ks.run("%actor stop", timeout=60)
        finally:
            ks.close()
