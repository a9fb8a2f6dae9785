"""Bidirectional RPC streaming: a calculator actor answers a stream of requests.

One context, one two-way stream: the caller keeps several requests in flight (a
sender task and a receiver task), the callee answers each as it comes. Typed payloads
(``msg_type``) make the callee reject a malformed request with the field path, and
the caller learns about it without the actor dying.
"""

import msgspec
import trio

import notebook_actors as tractor


class Request(msgspec.Struct):
    id: int
    op: str
    a: float
    b: float


class Reply(msgspec.Struct):
    id: int
    value: float | None = None
    error: str | None = None


OPS = {"add": lambda a, b: a + b, "mul": lambda a, b: a * b, "div": lambda a, b: a / b}


@tractor.context
async def calculator(ctx: tractor.Context) -> int:
    """Answer every Request on the stream with a Reply; return how many."""
    await ctx.started(sorted(OPS))
    answered = 0
    async with ctx.open_stream(msg_type=Request) as stream:
        while True:
            try:
                req = await stream.receive()
            except tractor.MsgTypeError as exc:  # a malformed request: say so, go on
                await stream.send(Reply(-1, error=str(exc).split(": ", 1)[-1]))
                continue
            except trio.EndOfChannel:
                return answered
            try:
                await stream.send(Reply(req.id, value=OPS[req.op](req.a, req.b)))
            except (KeyError, ZeroDivisionError) as exc:
                await stream.send(Reply(req.id, error=f"{type(exc).__name__}: {exc}"))
            answered += 1


async def main() -> None:
    async with tractor.open_nursery() as n:
        calc = await n.start_actor("calculator", enable_modules=[__name__])
        async with calc.open_context(calculator) as (ctx, ops):
            print(f"calculator offers {ops}")
            requests = [Request(i, ops[i % len(ops)], float(i), 2.0) for i in range(100)]
            replies: dict[int, Reply] = {}
            async with ctx.open_stream(msg_type=Reply) as stream:

                async def send_requests() -> None:
                    for req in requests:
                        await stream.send(req)
                    await stream.send(Request(100, "div", 1.0, 0.0))
                    await stream.send({"id": 101, "op": "add", "a": "one", "b": 2})

                async with trio.open_nursery() as tn:
                    tn.start_soon(send_requests)
                    for _ in range(len(requests) + 2):
                        reply = await stream.receive()
                        replies[reply.id] = reply
        print(f"answered {await ctx.result()} requests")
        print(f"request 7 ({requests[7].op}) -> {replies[7].value}")
        print(f"request 100 -> {replies[100].error}")
        print(f"malformed request -> {replies[-1].error}")
        await calc.cancel_actor()


if __name__ == "__main__":
    trio.run(main)
