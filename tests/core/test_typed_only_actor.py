"""A typed-only actor (``start_actor(..., typed_only=True)``), in real processes:
typed values go as before; every pickle it would send or receive is refused with an
error naming the value's type and why (call arguments before the function runs,
return values, stream messages both ways, the results of the calls it makes), and
its errors travel without their pickled exception. The actor goes on serving."""

from __future__ import annotations

import numpy as np
import pytest
import trio

import notebook_actors as na


def echo(value):
    return value


def make_array():
    return np.arange(4)


def fail_with_array():
    raise ValueError("bad rows", np.arange(3))


async def arrays():
    yield [1, 2]  # typed: goes
    yield np.arange(2)  # pickled: refused in the typed-only actor


async def call_peer(name: str) -> str:
    """From the typed-only actor: ask a plain actor for an array."""
    async with na.wait_for_actor(name) as portal:
        try:
            await portal.run(make_array)
        except na.MsgTypeError as exc:
            return f"refused: {exc}"
    return "accepted"


@na.context
async def summer(ctx) -> int:
    await ctx.started()
    total = 0
    async with ctx.open_stream() as stream:
        while True:
            try:
                value = await stream.receive()
            except na.MsgTypeError:
                continue  # refused, and the sender is told
            except trio.EndOfChannel:
                return total
            total += sum(value)
            await stream.send(sum(value))


def test_a_typed_only_actor_refuses_pickles_every_way(reg):
    """Test that a typed-only actor serves typed values, and refuses a pickled
    argument, return value, stream message in either direction and the pickled
    result of its own call to a plain actor, each with a clear error; its errors
    come without their pickled exception."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            strict = await n.start_actor("strict", enable_modules=[__name__], typed_only=True)
            plain = await n.start_actor("plain", enable_modules=[__name__])
            with trio.fail_after(60):
                assert await strict.run(echo, value={"a": [1, 2]}) == {"a": [1, 2]}

                with pytest.raises(na.RemoteActorError) as info:
                    await strict.run(echo, value=np.arange(3))
                text = str(info.value)
                assert info.value.type_name == "MsgTypeError" and "numpy.ndarray" in text
                assert "'strict'" in text and "typed_only" in text

                with pytest.raises(na.RemoteActorError) as info:
                    await strict.run(make_array)
                assert info.value.type_name == "TypeError" and "would travel pickled" in str(info.value)

                got = []
                with pytest.raises(na.RemoteActorError) as info:
                    async with strict.open_stream_from(arrays) as stream:
                        async for value in stream:
                            got.append(value)
                assert got == [[1, 2]] and "would travel pickled" in str(info.value)

                async with strict.open_context(summer) as (ctx, _):
                    async with ctx.open_stream() as stream:
                        await stream.send([1, 2])
                        assert await stream.receive() == 3
                        await stream.send(np.arange(3))
                        await stream.send([4])
                        assert await stream.receive() == 4  # after the refusal, in order
                        with pytest.raises(na.MsgTypeError) as refused:
                            await stream.send([5])
                        assert "numpy.ndarray" in str(refused.value) and "'strict'" in str(refused.value)
                assert await ctx.result() == 7

                text = await strict.run(call_peer, name="plain")
                assert text.startswith("refused") and "numpy.ndarray" in text

                with pytest.raises(na.RemoteActorError) as info:
                    await strict.run(fail_with_array)
                assert "bad rows" in str(info.value) and info.value.exception is None

                # the plain actor is unaffected, and the strict one still serves
                assert np.array_equal(await plain.run(make_array), np.arange(4))
                assert await strict.run(echo, value="still serving") == "still serving"
            await strict.cancel_actor()
            await plain.cancel_actor()

    trio.run(main)
