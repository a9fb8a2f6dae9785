"""Errors crossing actors: boxing, re-boxing hop by hop, one error vs a MultiError,
unexpected deaths as ActorCrashed."""

from __future__ import annotations

import os
import signal

import pytest
import trio

import notebook_actors as na


class CustomError(Exception):
    """An error class the caller can import too."""


def raise_custom(msg: str) -> None:
    raise CustomError(msg)


def raise_value(msg: str) -> None:
    raise ValueError(msg)


async def middle_spawns_failing_leaf() -> None:
    """Level 2: open a nursery whose child (level 3) fails."""
    async with na.open_nursery() as n:
        await n.run_in_actor(raise_custom, name="leaf", msg="from the bottom")


def exit_abruptly(code: int) -> None:
    os._exit(code)


async def sleep_forever() -> None:
    await trio.sleep_forever()


def test_error_is_boxed_with_type_message_traceback_uid(reg):
    """Test that a child's error arrives as RemoteActorError with the original type,
    message, remote traceback text and the failing actor's uid."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("thrower", enable_modules=[__name__])
            with pytest.raises(na.RemoteActorError) as info:
                await portal.run(raise_custom, msg="it broke")
            err = info.value
            assert err.type is CustomError
            assert err.type_name == "CustomError"
            assert str(err).startswith(repr(portal.channel.uid))
            assert "it broke" in str(err)
            assert "raise_custom" in err.tb_str and "CustomError: it broke" in err.tb_str
            assert err.src_uid == portal.channel.uid
            assert err.relay_path == [portal.channel.uid]
            assert err.msgdata["tb_str"] == err.tb_str
            await portal.cancel_actor()

    trio.run(main)


async def raise_after_a_checkpoint(msg: str) -> None:
    await trio.lowlevel.checkpoint()
    raise ValueError(msg)


def test_the_remote_traceback_starts_in_the_users_code(reg):
    """Test that a boxed error's traceback shows the user's frames only (sync and
    async functions): none of the runtime's frames that called the function."""
    runtime_dir = os.path.dirname(na.__file__) + os.sep

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("thrower", enable_modules=[__name__])
            for fn in (raise_custom, raise_after_a_checkpoint):
                with pytest.raises(na.RemoteActorError) as info:
                    await portal.run(fn, msg="it broke")
                frames = [line for line in info.value.tb_str.splitlines() if line.lstrip().startswith("File ")]
                assert frames and all(runtime_dir not in line for line in frames), info.value.tb_str
                assert fn.__name__ in frames[0] and "it broke" in str(info.value)
            await portal.cancel_actor()

    trio.run(main)


def test_a_refused_call_is_one_line(reg):
    """Test that a call the actor refuses (its module not enabled, no such method)
    raises an error of one line that says why: no traceback of the runtime's."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("refuser")
            for call in (lambda: portal.run("os", "getcwd"), lambda: portal.run_from_ns("self", "no_such_method")):
                with pytest.raises(na.RemoteActorError) as info:
                    await call()
                assert info.value.type is na.ModuleNotExposed
                assert len(str(info.value).splitlines()) == 1, str(info.value)
                assert "Traceback" not in info.value.tb_str and info.value.tb_str.strip()
            await portal.cancel_actor()

    trio.run(main)


def test_error_is_reboxed_hop_by_hop_in_a_three_level_tree(reg):
    """Test that an error at the bottom of root -> middle -> leaf reaches the root with
    its original type and origin, and a relay path through every actor it crossed."""

    async def main() -> None:
        with pytest.raises(na.RemoteActorError) as info:
            async with na.open_nursery(**reg) as n:
                await n.run_in_actor(middle_spawns_failing_leaf, name="middle")
        err = info.value
        assert err.type is CustomError
        assert err.src_uid[0] == "leaf"
        assert [uid[0] for uid in err.relay_path] == ["leaf", "middle"]
        assert "from the bottom" in str(err)
        assert "relayed" in str(err)
        assert "raise_custom" in err.tb_str

    trio.run(main)


def test_one_failure_is_raised_as_itself(reg):
    """Test that one failing child (with a healthy sibling) makes the nursery raise that
    RemoteActorError, not a group, and cancels the sibling."""

    async def main() -> None:
        with pytest.raises(na.RemoteActorError) as info:
            async with na.open_nursery(**reg) as n:
                sibling = await n.run_in_actor(sleep_forever)
                await n.run_in_actor(raise_value, msg="only me")
        assert info.value.type is ValueError
        with pytest.raises(na.ContextCancelled):
            await sibling.result()

    trio.run(main)


def test_several_failures_are_a_multierror(reg):
    """Test that several failing children raise a MultiError (an ExceptionGroup) of
    their RemoteActorErrors."""

    async def main() -> None:
        with pytest.raises(na.MultiError) as info:
            async with na.open_nursery(**reg) as n:
                first = await n.run_in_actor(raise_value, name="one", msg="one")
                second = await n.run_in_actor(raise_custom, name="two", msg="two")
                # both have failed before the block ends: nobody is cancelled early
                for portal in (first, second):
                    with pytest.raises(na.RemoteActorError):
                        await portal.result()
        group = info.value
        assert isinstance(group, ExceptionGroup)
        assert sorted(e.type.__name__ for e in group.exceptions) == ["CustomError", "ValueError"]
        assert group.subgroup(lambda e: isinstance(e, na.RemoteActorError) and e.type is ValueError) is not None

    trio.run(main)


def test_body_error_and_child_error_are_grouped(reg):
    """Test that an error in the nursery body plus a failed child raise both."""

    async def main() -> None:
        with pytest.raises(na.MultiError) as info:
            async with na.open_nursery(**reg) as n:
                portal = await n.run_in_actor(raise_value, msg="child")
                with pytest.raises(na.RemoteActorError):
                    await portal.result()
                raise KeyError("body")
        kinds = {type(e) for e in info.value.exceptions}
        assert kinds == {na.RemoteActorError, KeyError}

    trio.run(main)


@pytest.mark.parametrize("code", [3, 0])
def test_unexpected_exit_is_actor_crashed(reg, code):
    """Test that a child that exits by itself mid-call (os._exit) raises ActorCrashed
    from the nursery with its exit code; exit code 0 mid-call is a crash too."""

    async def main() -> None:
        with pytest.raises(na.ActorCrashed) as info:
            async with na.open_nursery(**reg) as n:
                await n.run_in_actor(exit_abruptly, code=code)
        crashed = info.value
        assert isinstance(crashed, na.ActorCrashed)
        assert crashed.exitcode == code
        assert f"exit code {code}" in str(crashed)
        assert "before its function returned" in str(crashed)

    trio.run(main)


def test_sigkill_by_someone_else_is_actor_crashed(reg):
    """Test that a child killed by a signal someone else sent raises ActorCrashed naming
    the signal."""

    async def main() -> None:
        with pytest.raises(na.ActorCrashed) as info:
            async with na.open_nursery(**reg) as n:
                portal = await n.start_actor("victim")
                assert await portal.run_from_ns("self", "ping") == "pong"
                os.kill(portal.channel.peer_pid, signal.SIGKILL)
        assert info.value.exitcode == -signal.SIGKILL
        assert "SIGKILL" in str(info.value)
        assert info.value.src_uid == portal.channel.uid

    trio.run(main)


def test_child_that_dies_before_connecting_is_actor_crashed(reg):
    """Test that a child that fails at start-up, before it connected back (here: it
    cannot bind its address), is reported as ActorCrashed, without waiting for the
    spawn timeout."""

    async def main() -> None:
        with pytest.raises(na.ActorCrashed) as info, trio.fail_after(30):  # spawn timeout: 60 s
            async with na.open_nursery(**reg) as n:
                portal = await n.start_actor("doomed", bind_addr="/nonexistent/dir/doomed.sock")
                with pytest.raises(na.TransportClosed):
                    await portal.run_from_ns("self", "ping")
        assert info.value.exitcode == 1
        assert not portal.channel.connected()

    trio.run(main)
