"""A test host with a real sshd for the whole module (``testing._hosts``)."""

from __future__ import annotations

import pytest

from notebook_actors.testing._hosts import can_make_test_hosts, test_host


@pytest.fixture(scope="module")
def ssh_host():
    why_not = can_make_test_hosts()
    if why_not:
        pytest.skip(why_not)
    with test_host("testhost1") as host:
        yield host
