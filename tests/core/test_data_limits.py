"""The frame limit is for messages, not for data, in real processes: with an actor's
``NOTEBOOK_ACTORS_MAX_FRAME`` at 1 MiB, 8 MiB arrays still go to it and come back
(their data travels out of band); a value whose *message* would be over the limit (4
MiB of bytes, which msgpack carries in line) is refused in the sender with one clear
error, as a return value, a stream message or a started value, and the actor goes on
serving."""

from __future__ import annotations

import numpy as np
import pytest
import trio

import notebook_actors as na

MiB = 1024 * 1024


def echo(value):
    return value


def big_bytes(n: int) -> bytes:
    return b"x" * n


async def big_messages(n: int):
    yield b"small"
    yield b"y" * n


@na.context
async def big_start(ctx, n: int) -> None:
    await ctx.started(b"z" * n)


@pytest.fixture
def small_frames(monkeypatch):
    monkeypatch.setenv("NOTEBOOK_ACTORS_MAX_FRAME", str(MiB))  # read at the child's import


def test_arrays_pass_a_small_frame_limit_and_big_messages_are_refused(reg, small_frames):
    """Test that arrays 8x the frame limit go both ways, and that a return value, a
    stream message and a started value whose message is over it fail in the sender
    with an error naming the limit; the actor then still serves."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("small", enable_modules=[__name__])
            with trio.fail_after(60):
                arr = np.arange(MiB, dtype=np.float64)  # 8 MiB
                assert np.array_equal(await portal.run(echo, value=arr), arr)
                back = await portal.run(echo, value={"a": arr[::2]})  # a strided view: copied out of band
                assert np.array_equal(back["a"], arr[::2])

                with pytest.raises(na.RemoteActorError) as info:
                    await portal.run(big_bytes, n=4 * MiB)
                assert info.value.type_name == "TypeError" and "NOTEBOOK_ACTORS_MAX_FRAME" in str(info.value)

                got = []
                with pytest.raises(na.RemoteActorError) as info:
                    async with portal.open_stream_from(big_messages, n=4 * MiB) as stream:
                        async for value in stream:
                            got.append(value)
                assert got == [b"small"] and "NOTEBOOK_ACTORS_MAX_FRAME" in str(info.value)

                with pytest.raises(na.RemoteActorError) as info:
                    async with portal.open_context(big_start, n=4 * MiB):
                        pass
                assert "NOTEBOOK_ACTORS_MAX_FRAME" in str(info.value)

                assert await portal.run(big_bytes, n=1000) == b"x" * 1000
            await portal.cancel_actor()

    trio.run(main)
