"""Reliability fixtures: a file-descriptor guard (``reg`` comes from tests/conftest.py)."""

from __future__ import annotations

import gc

import pytest

from notebook_actors.testing._faults import open_fds


@pytest.fixture
def no_fd_leak():
    """Fail the test if this (the root's) process ends it with more fds open than before.

    Compared by target, so an fd number reused for something else still counts.
    """
    before = open_fds()
    yield
    # An fd that only a garbage collection frees is held by a reference cycle, not
    # leaked. (The pipe this once seemed to free was the stack thread's, closed by that
    # thread a moment after its actor ended: a race, not a cycle; the actor now waits
    # for the thread, tests/debugging/test_stacks.py checks it.)
    gc.collect()
    after = open_fds()
    leaked = {fd: target for fd, target in after.items() if before.get(fd) != target}
    assert leaked == {}, f"file descriptors leaked by the test: {leaked}"
