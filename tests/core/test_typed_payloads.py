"""Typed payloads: msgspec types declared on a stream or a @context are checked where
messages arrive; a mismatch raises MsgTypeError with the field path there, is reported
to the sender, and no actor dies of it."""

from __future__ import annotations

import threading

import msgspec
import pytest
import trio

import notebook_actors as na


class Point(msgspec.Struct):
    x: int
    y: int


class Order(msgspec.Struct):
    item: str
    qty: int
    points: list[Point] = []


@na.context
async def point_sink(ctx) -> dict:
    """Receive Points; answer "ok", or "rejected" after a message that is not one."""
    await ctx.started()
    got, errors = [], []
    async with ctx.open_stream(msg_type=Point) as stream:
        while True:
            try:
                point = await stream.receive()
            except na.MsgTypeError as exc:
                errors.append(str(exc))
                await stream.send("rejected")
                continue
            except trio.EndOfChannel:
                break
            got.append([point.x, point.y])
            await stream.send("ok")
    return {"got": got, "errors": errors}


@na.context(payload_type=Order)
async def order_desk(ctx, first: dict) -> int:
    """Start with ``first`` (checked against Order by the caller); echo every order."""
    await ctx.started(first)
    n = 0
    async with ctx.open_stream() as stream:
        async for order in stream:
            assert type(order) is Order
            await stream.send(order)
            n += 1
    return n


@na.context
async def sends_a_bad_point(ctx) -> str:
    await ctx.started()
    async with ctx.open_stream() as stream:
        await stream.send({"x": 1, "y": "two"})
        assert await stream.receive() == "next please"  # the Reject arrived before this
        try:
            await stream.send({"x": 1, "y": 2})
        except na.MsgTypeError as exc:
            await stream.send({"x": 3, "y": 4})
            return str(exc)
    return "not reported"


@na.context
async def unencodable_then_fine(ctx) -> str:
    await ctx.started()
    async with ctx.open_stream() as stream:
        try:
            await stream.send(threading.Lock())
        except TypeError as exc:
            await stream.send("still here")
            return str(exc)
    return "no error"


def test_receiver_raises_msg_type_error_with_path_and_sender_is_told(reg):
    """Test that a message not matching the receiver's msg_type raises MsgTypeError with
    the field path in the receiver (which may go on), and the sender's next send raises
    MsgTypeError saying the peer rejected it."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("sink", enable_modules=[__name__])
            async with portal.open_context(point_sink) as (ctx, _):
                async with ctx.open_stream() as stream:
                    await stream.send(Point(1, 2))
                    assert await stream.receive() == "ok"
                    await stream.send({"x": "one", "y": 2})
                    assert await stream.receive() == "rejected"
                    with pytest.raises(na.MsgTypeError, match=r"rejected a message.*\$\.x"):
                        await stream.send(Point(3, 4))
                    await stream.send(Point(3, 4))  # reported once; the stream goes on
                    assert await stream.receive() == "ok"
            result = await ctx.result()
            assert result["got"] == [[1, 2], [3, 4]]
            [error] = result["errors"]
            assert "Expected `int`, got `str` - at `$.x`" in error
            assert "does not match Point" in error
            await portal.cancel_actor()

    trio.run(main)


def test_context_payload_type_checks_first_value_and_both_directions(reg):
    """Test that @context(payload_type=...) decodes the started value and the stream's
    messages in both directions as that type, and a started value that does not match
    raises MsgTypeError with the path from open_context while the actor keeps running."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("desk", enable_modules=[__name__])
            async with portal.open_context(order_desk, first={"item": "pen", "qty": 1}) as (ctx, first):
                assert first == Order("pen", 1)
                async with ctx.open_stream() as stream:
                    order = Order("ink", 2, [Point(1, 2)])
                    await stream.send(order)
                    assert await stream.receive() == order
            assert await ctx.result() == 1

            with pytest.raises(na.MsgTypeError, match=r"Expected `int`, got `str` - at `\$\.qty`"):
                async with portal.open_context(order_desk, first={"item": "pen", "qty": "many"}):
                    pytest.fail("the body must not run")
            assert await portal.run_from_ns("self", "ping") == "pong"
            await portal.cancel_actor()

    trio.run(main)


def test_uncaught_mismatch_fails_the_context_not_the_actor(reg):
    """Test that a mismatch the callee does not catch fails its context: the caller gets
    a RemoteActorError of type MsgTypeError with the nested field path, and the actor
    keeps serving."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("strict", enable_modules=[__name__])
            with pytest.raises(na.RemoteActorError) as info:
                async with portal.open_context(order_desk, first={"item": "a", "qty": 1}) as (ctx, _):
                    async with ctx.open_stream() as stream:
                        await stream.send({"item": "pen", "qty": 1, "points": [{"x": 1, "y": "2"}]})
                        await stream.receive()
            assert info.value.type is na.MsgTypeError
            assert "$.points[0].y" in str(info.value)
            async with portal.open_context(order_desk, first={"item": "b", "qty": 2}) as (ctx, first):
                assert first.item == "b"
                # the callee streams: open and close our end so that it returns (leaving
                # with its stream unheard would cancel it, as in tractor)
                async with ctx.open_stream():
                    pass
            assert await ctx.result() == 0
            await portal.cancel_actor()

    trio.run(main)


def test_caller_side_msg_type_is_reported_to_the_callee(reg):
    """Test that a caller's msg_type rejects a bad message from the callee with the path,
    the next message still arrives, and the callee's next send raises MsgTypeError."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("badsender", enable_modules=[__name__])
            async with portal.open_context(sends_a_bad_point) as (ctx, _):
                async with ctx.open_stream(msg_type=Point) as stream:
                    with pytest.raises(na.MsgTypeError, match=r"\$\.y"):
                        await stream.receive()
                    await stream.send("next please")
                    assert await stream.receive() == Point(3, 4)
            report = await ctx.result()
            assert "rejected a message" in report and "$.y" in report
            await portal.cancel_actor()

    trio.run(main)


def test_unencodable_stream_message_raises_type_error_in_the_sender(reg):
    """Test that sending a value the codec cannot encode raises TypeError in the sender,
    sends nothing, and leaves the stream usable."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("encoder", enable_modules=[__name__])
            async with portal.open_context(unencodable_then_fine) as (ctx, _):
                async with ctx.open_stream() as stream:
                    assert await stream.receive() == "still here"
            assert "a stream message of type lock cannot be sent" in await ctx.result()
            await portal.cancel_actor()

    trio.run(main)
