"""Tests of the live tree view (notebook_actors._tree): real actors, real feeds."""

from __future__ import annotations

import os
import signal

import pytest
import trio

import notebook_actors as na
from notebook_actors import _tree
from notebook_actors.testing import private_registry_addr, trio_test
from notebook_actors.testing._tree_actors import TREE_ACTORS, relay_from

# Functions below travel by name ("test_tree:..."): every actor imports this module.
MOD = __name__


def boom() -> None:
    raise ValueError("tree test boom")


def count_tree_feeds() -> int:
    actor = na.current_actor()
    chans = {c for cs in actor._peers.values() for c in cs}
    return sum(1 for c in chans for ctx in c.calls.values() if ctx.fn_name == _tree.FEED_CALL)


async def wait_until(watch: _tree.TreeWatch, predicate, timeout: float = 30):
    """The first snapshot for which ``predicate(nodes)`` holds (fail_after: hang guard)."""
    with trio.fail_after(timeout):
        snap = watch.snapshot()
        while not predicate(snap["nodes"]):
            await watch.__anext__()
            snap = watch.snapshot()
        return snap


def by_name(nodes: dict, name: str) -> dict | None:
    found = [n for n in nodes.values() if n["name"] == name]
    return found[0] if found else None


@trio_test
async def test_nested_tree_with_a_stream_reaches_the_root():
    """Test that a grandchild and its stream show up at the root with parent links,
    states and growing message counts."""
    async with na.open_nursery(registry_addrs=[private_registry_addr()]) as n:
        mid = await n.start_actor("mid", enable_modules=[MOD, TREE_ACTORS])
        async with trio.open_nursery() as tn:
            tn.start_soon(lambda: mid.run(relay_from, name="leaf", interval=0.005))
            async with na.open_tree_watch(interval=0.1) as watch:

                def streaming_with_counts(nodes):
                    leaf = by_name(nodes, "leaf")
                    return leaf is not None and any(c["sent"] >= 20 for c in leaf["calls"])

                snap = await wait_until(watch, streaming_with_counts)
                nodes = snap["nodes"]
                root, mid_node, leaf = (by_name(nodes, x) for x in ("root", "mid", "leaf"))
                assert snap["root"] == root["key"]
                assert root["parent"] is None
                assert mid_node["parent"] == root["key"]
                assert leaf["parent"] == mid_node["key"]
                assert leaf["state"] == "streaming"
                assert mid_node["state"] == "streaming"
                assert leaf["pid"] != mid_node["pid"] != root["pid"]
                assert leaf["rss"] > 0
                [call] = [c for c in leaf["calls"] if c["fn"] == f"{TREE_ACTORS}:pump"]
                assert call["side"] == "callee" and call["peer"] == mid_node["key"] and call["stream"]
                [back] = [c for c in mid_node["calls"] if c["fn"] == f"{TREE_ACTORS}:pump"]
                assert back["side"] == "caller" and back["peer"] == leaf["key"]
            tn.cancel_scope.cancel()
        await n.cancel()


@trio_test
async def test_closing_the_watch_stops_every_feed():
    """Test that leaving open_tree_watch ends the tree_feed contexts in the children."""
    async with na.open_nursery(registry_addrs=[private_registry_addr()]) as n:
        child = await n.start_actor("child", enable_modules=[MOD])
        async with _tree.open_tree_watch(interval=0.1) as watch:
            await wait_until(watch, lambda nodes: (by_name(nodes, "child") or {}).get("started"))
            assert await child.run(count_tree_feeds) == 1
        assert await child.run(count_tree_feeds) == 0
        await n.cancel()


@trio_test
async def test_cancelled_child_shows_exited_then_leaves(monkeypatch):
    """Test that a cancelled daemon shows as exited(0) and then leaves the tree, and
    that an open watch does not keep it alive."""
    monkeypatch.setattr(_tree, "EXITED_LINGER", 0.3)
    async with na.open_nursery(registry_addrs=[private_registry_addr()]) as n:
        child = await n.start_actor("doomed", enable_modules=[MOD])
        async with _tree.open_tree_watch(interval=0.1) as watch:
            await wait_until(watch, lambda nodes: (by_name(nodes, "doomed") or {}).get("state") == "idle")
            assert await child.cancel_actor()
            snap = await wait_until(watch, lambda nodes: (by_name(nodes, "doomed") or {}).get("state") == "exited")
            assert by_name(snap["nodes"], "doomed")["exitcode"] == 0
            assert _tree.state_word(by_name(snap["nodes"], "doomed")) == "exited(0)"
            await wait_until(watch, lambda nodes: by_name(nodes, "doomed") is None)


@trio_test
async def test_crashed_run_in_actor_stands_out():
    """Test that an actor whose function raised is shown as crashed with its error."""
    async with na.open_root_actor(registry_addrs=[private_registry_addr()]):
        async with _tree.open_tree_watch(interval=0.1) as watch:
            with pytest.raises(na.RemoteActorError, match="tree test boom"):
                async with na.open_nursery() as n:
                    await n.run_in_actor(boom)
            snap = await wait_until(watch, lambda nodes: (by_name(nodes, "boom") or {}).get("state") == "crashed")
            assert "tree test boom" in by_name(snap["nodes"], "boom")["error"]


@trio_test
async def test_sigkilled_child_shows_the_signal():
    """Test that a SIGKILLed child is shown as crashed(SIGKILL)."""
    async with na.open_root_actor(registry_addrs=[private_registry_addr()]):
        async with _tree.open_tree_watch(interval=0.1) as watch:
            with pytest.raises(na.ActorCrashed):
                async with na.open_nursery() as n:
                    await n.start_actor("victim", enable_modules=[MOD])
                    snap = await wait_until(
                        watch, lambda nodes: (by_name(nodes, "victim") or {}).get("state") == "idle"
                    )
                    os.kill(by_name(snap["nodes"], "victim")["pid"], signal.SIGKILL)
                    await trio.sleep_forever()
            snap = await wait_until(watch, lambda nodes: (by_name(nodes, "victim") or {}).get("state") == "crashed")
            assert _tree.state_word(by_name(snap["nodes"], "victim")) == "crashed(SIGKILL)"


@trio_test
async def test_actors_holding_or_waiting_for_the_repl_show_debugger():
    """Test that the lock holder and the queued actors published at the root show the
    state "debugger" (the children need not say so themselves)."""
    async with na.open_nursery(registry_addrs=[private_registry_addr()]) as n:
        await n.start_actor("holder")
        await n.start_actor("queued")
        await n.start_actor("bystander")
        async with _tree.open_tree_watch(interval=0.1) as watch:
            snap = await wait_until(
                watch,
                lambda nodes: all(
                    (by_name(nodes, x) or {}).get("state") == "idle" for x in ("holder", "queued", "bystander")
                ),
            )
            uid = lambda name: by_name(snap["nodes"], name)["uid"]  # noqa: E731
            _tree.set_debug_lock(uid("holder"), [uid("queued")])
            try:
                snap = await wait_until(watch, lambda nodes: by_name(nodes, "queued")["state"] == "debugger")
                assert by_name(snap["nodes"], "holder")["state"] == "debugger"
                assert by_name(snap["nodes"], "bystander")["state"] == "idle"
            finally:
                _tree.set_debug_lock(None)
        await n.cancel()


@trio_test
async def test_state_override_is_published_and_withdrawn():
    """Test that set_state (the hook an add-on uses to say what an actor is doing)
    replaces the derived state in a watch, and that clearing it brings the derived one back."""
    async with na.open_root_actor(registry_addrs=[private_registry_addr()]) as actor:
        me = _tree.key_of(actor.uid)
        async with _tree.open_tree_watch(interval=0.05) as watch:
            before = (await wait_until(watch, lambda nodes: me in nodes))["nodes"][me]["state"]
            assert before != "debugger"
            _tree.set_state("debugger")
            try:
                await wait_until(watch, lambda nodes: nodes[me]["state"] == "debugger")
            finally:
                _tree.set_state(None)
            await wait_until(watch, lambda nodes: nodes[me]["state"] == before)


@trio_test
async def test_debug_lock_holder_and_queue_are_published():
    """Test that the debugger lock's holder and queue reach a watch, the holder shown in the debugger."""
    async with na.open_root_actor(registry_addrs=[private_registry_addr()]) as actor:
        me = _tree.key_of(actor.uid)
        async with _tree.open_tree_watch(interval=0.05) as watch:
            _tree.set_debug_lock(actor.uid, [("other", "abc")])
            try:
                snap = await wait_until(watch, lambda nodes: nodes[me]["state"] == "debugger")
                assert snap["debug"]["holder"] == me
                assert snap["debug"]["waiting"] == ["other.abc"]
            finally:
                _tree.set_debug_lock(None)


def test_format_tree_draws_like_pstree():
    """Test that format_tree indents children under parents with state words."""

    def node(key, name, parent, state="idle", **kw):
        return {
            "key": key,
            "name": name,
            "pid": 1,
            "parent": parent,
            "state": state,
            "started": 100.0,
            "cpu": 1.0,
            "rss": 2 * 1024 * 1024,
            "calls": [],
            **kw,
        }

    tree = {
        "root": "r",
        "debug": {"holder": None, "waiting": []},
        "nodes": {
            "r": node("r", "root", None, "running"),
            "a": node("a", "a", "r", "crashed", exitcode=-9, error="died"),
            "b": node("b", "b", "r"),
            "c": node(
                "c",
                "c",
                "a",
                "streaming",
                calls=[{"stream": True, "fn": "m:f", "side": "callee", "peer": "a", "sent": 1, "recv": 0}],
            ),
        },
    }
    text = _tree.format_tree(tree, now=165.0)
    assert text.splitlines() == [
        "root [1] running  up 1:05  cpu 1%  rss 2.0M",
        "├─ a [1] crashed(SIGKILL)  up 1:05  cpu 1%  rss 2.0M  ! died",
        "│  └─ c [1] streaming  up 1:05  cpu 1%  rss 2.0M  1 stream",
        "└─ b [1] idle  up 1:05  cpu 1%  rss 2.0M",
    ]


def test_diff_and_apply_delta_round_trip():
    """Test that applying diff(old, new) to old gives new."""
    old = {"a": {"x": 1}, "b": {"x": 2}}
    new = {"b": {"x": 3}, "c": {"x": 4}}
    delta = _tree.diff(old, new)
    assert delta == {"set": {"b": {"x": 3}, "c": {"x": 4}}, "del": ["a"]}
    assert _tree.apply_delta(old, delta) == new
    assert _tree.diff(new, new) == {}
