"""The state of one call (notebook_actors/_call.py), driven message by message as
the channel's dispatch loop drives it: credit, stream ends, the caller's block scope,
the callee's cancel. End-to-end behaviour is in test_context.py / test_stream.py /
test_flow_control.py; these pin the bookkeeping those rely on."""

import msgspec
import trio
import trio.testing

from notebook_actors._call import UNLIMITED, Call
from notebook_actors._channel import Channel
from notebook_actors.msg import Credit, Error, ErrorInfo, Return, Started, Stop, Yield
from notebook_actors.testing import trio_test


def new_call(side: str = "caller") -> Call:
    return Call(Channel(dialer=side == "caller", uid=("peer", "1")), 0, side, "mod:fn")


def yield_msg(payload: bytes = b"\x01") -> Yield:
    return Yield(0, msgspec.Raw(payload))


def error_msg() -> Error:
    return Error(0, ErrorInfo("ValueError", "builtins", "boom", "", ("peer", "1")))


def test_the_first_credit_sets_the_window_later_ones_add():
    call = new_call()
    call.deliver(Credit(0, 8, 1000))
    assert (call.credit, call.credit_bytes, call.peer_window, call.credit_known) == (8, 1000, 8, True)
    call.deliver(Credit(0, 3, 200))
    assert (call.credit, call.credit_bytes, call.peer_window) == (11, 1200, 8)
    call.spend_credit(1200)
    assert call.credit == 10 and not call.has_credit()  # no bytes left


def test_a_first_grant_without_bytes_does_not_limit_bytes():
    call = new_call()
    call.deliver(Credit(0, 4, 0))
    assert call.credit_bytes == UNLIMITED and call.has_credit()


def test_a_grant_of_nothing_changes_nothing():
    call = new_call()
    call.deliver(Credit(0, 0, 10))
    call.deliver(Credit(0, -5, 10))
    assert (call.credit, call.credit_known) == (0, False)


def test_stream_messages_after_this_side_closed_are_dropped_the_end_is_kept():
    call = new_call()
    call.deliver(yield_msg())
    call.deliver(Started(0, msgspec.Raw(b"\xc0")))
    call.close_stream()
    assert [type(m) for m in call.inbox] == [Started]  # unread values freed
    call.deliver(yield_msg())
    call.deliver(Stop(0))
    call.deliver(Return(0, msgspec.Raw(b"\x01")))
    assert [type(m) for m in call.inbox] == [Started, Return]
    assert call.peer_stopped and type(call.final) is Return


def test_drop_unread_stops_at_the_final_message():
    call = new_call()
    for _ in range(3):
        call.deliver(yield_msg(b"\xa3abc"))
    call.deliver(Return(0, msgspec.Raw(b"\x01")))
    call.deliver(yield_msg())  # (a broken peer's late value stays behind the end)
    call.drop_unread()
    assert [type(m) for m in call.inbox] == [Return, Yield]


@trio_test
async def test_a_far_end_error_interrupts_the_callers_block():
    call = new_call()
    call.body_scope = trio.CancelScope()
    call.deliver(error_msg())
    assert call.body_scope.cancel_called
    assert call.final_error() is not None


@trio_test
async def test_a_far_end_error_after_our_own_cancel_leaves_the_block_alone():
    call = new_call()
    call.body_scope = trio.CancelScope()
    call.cancel_called = True
    call.deliver(error_msg())
    assert not call.body_scope.cancel_called


@trio_test
async def test_cancel_by_cancels_a_callee_and_names_who_asked():
    callee = new_call("callee")
    callee.cancel_by(("other", "2"))  # no task scope yet: nothing to cancel
    assert callee.canceller is None
    callee.scope = trio.CancelScope()
    callee.cancel_by(("other", "2"))
    assert callee.scope.cancel_called and callee.canceller == ("other", "2")


@trio_test
async def test_cancel_by_never_touches_a_caller():
    caller = new_call()
    caller.scope = trio.CancelScope()
    caller.cancel_by(("other", "2"))
    assert not caller.scope.cancel_called and caller.canceller is None


@trio_test
async def test_next_wakes_when_a_message_arrives():
    call = new_call()
    got = []

    async def reader() -> None:
        got.append(await call.next())

    async with trio.open_nursery() as n:
        n.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        call.deliver(Return(0, msgspec.Raw(b"\x01")))
    assert [type(m) for m in got] == [Return]
