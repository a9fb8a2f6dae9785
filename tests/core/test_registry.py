"""The registry's table (_registry.Registry): what find/wait answer as actors come and go."""

from __future__ import annotations

import trio
import trio.testing

from notebook_actors._registry import Registry


def test_find_answers_the_newest_of_a_name_and_by_key_has_tractors_shape():
    """Test that two actors of one name are both found (oldest first), find() gives the
    newest one's address, and by_key() keys entries 'name.uuid'; a TCP address is kept
    and answered as tractor's (host, port)."""
    reg = Registry()
    reg.register(["w", "a1"], "uds:/one")
    reg.register(("w", "b2"), "uds:/two")
    reg.register(["other", "c3"], "tcp:127.0.0.1:9")
    assert reg.find_all("w") == [[["w", "a1"], "uds:/one"], [["w", "b2"], "uds:/two"]]
    assert reg.find("w") == "uds:/two"
    assert reg.find("nobody") is None
    assert reg.by_key() == {"w.a1": "uds:/one", "w.b2": "uds:/two", "other.c3": ("127.0.0.1", 9)}
    assert reg.find("other") == ("127.0.0.1", 9)
    assert ("w", "a1") in reg


def test_unregister_forgets_and_tolerates_unknown_uids():
    """Test that an unregistered uid is gone and unregistering an unknown one is a no-op."""
    reg = Registry()
    reg.register(["w", "a1"], "uds:/one")
    reg.unregister(["w", "a1"])
    reg.unregister(["never", "seen"])
    assert reg.find_all("w") == [] and ("w", "a1") not in reg


def test_wait_for_returns_once_the_name_registers():
    """Test that wait_for() blocks until an actor of that name registers, then gives
    every address of that name; other names do not wake it with an answer."""

    async def main() -> list[str]:
        reg = Registry()
        async with trio.open_nursery() as n:
            got: list[list[str]] = []

            async def waiter() -> None:
                got.append(await reg.wait_for("late"))

            n.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            reg.register(["early", "x"], "uds:/x")
            await trio.testing.wait_all_tasks_blocked()
            assert got == []
            reg.register(["late", "y"], "uds:/y")
        return got[0]

    assert trio.run(main) == ["uds:/y"]
