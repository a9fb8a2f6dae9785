"""The fork server's template survives bad spawn requests: an oversized announced
size is refused without allocating it, a deeply nested or ill-typed request is
refused, and the next real spawn still works."""

from __future__ import annotations

import os

import pytest
import trio

import notebook_actors as na
from notebook_actors import _forkserver, testing
from notebook_actors.testing import _faults

pytestmark = pytest.mark.usefixtures("no_fd_leak")

BAD_REQUESTS = {
    "oversized": (0xFFFFFFFF).to_bytes(4, "big") + b"\x00" * 64,
    "deeply_nested": (100_001).to_bytes(4, "big") + b"\x91" * 100_000 + b"\xc0",
    "not_a_map": _forkserver._pack([1, 2, 3]),
    "garbage": (8).to_bytes(4, "big") + b"\xc1" * 8,
}


@pytest.mark.parametrize("request_bytes", list(BAD_REQUESTS.values()), ids=list(BAD_REQUESTS))
def test_template_survives_a_bad_request(request_bytes):
    """Test that a bad spawn request gets its connection closed, the template keeps
    running (same pid) and forks the next actor."""

    async def main() -> None:
        async with na.open_nursery(registry_addrs=[testing.private_registry_addr()], start_method="forkserver") as n:
            server = await _forkserver.ensure_started(wait_ready=True)
            template_pid = server.proc.pid
            with trio.fail_after(30):
                stream = await trio.open_unix_socket(server.path)
                async with stream:
                    await stream.send_all(request_bytes)
                    try:
                        answer = await stream.receive_some(16)
                    except trio.BrokenResourceError:  # closed with our bytes unread
                        answer = b""
                    assert answer == b""  # refused: closed, no answer
                await server.wait_ready()
                assert testing.alive(template_pid)
                portal = await n.run_in_actor(_faults.getpid)
                assert await portal.result() != os.getpid()

    trio.run(main)
