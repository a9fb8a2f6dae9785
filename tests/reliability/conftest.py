"""Reliability fixtures: a private registry per test, and a file-descriptor guard."""
from __future__ import annotations

import pytest

from notebook_actors import testing
from notebook_actors.testing._faults import open_fds


@pytest.fixture
def reg():
    """Root kwargs for a tree alone on this host (its own registry socket)."""
    return {"registry_addrs": [testing.private_registry_addr()]}


@pytest.fixture
def no_fd_leak():
    """Fail the test if this (the root's) process ends it with more fds open than before.

    Compared by target, so an fd number reused for something else still counts.
    """
    before = open_fds()
    yield
    after = open_fds()
    leaked = {fd: target for fd, target in after.items() if before.get(fd) != target}
    assert leaked == {}, f"file descriptors leaked by the test: {leaked}"
