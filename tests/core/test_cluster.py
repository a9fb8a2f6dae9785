"""open_actor_cluster: a pool of daemon actors, one per core by default."""

from __future__ import annotations

import os

import pytest
import trio

import notebook_actors as na
from notebook_actors import testing
from notebook_actors.testing import trio_test
from notebook_actors.trionics import open_actor_cluster
from notebook_actors.trionics._cluster import _cluster_names


def whoami() -> list:
    return [na.current_actor().name, os.getpid()]


@trio_test
async def test_cluster_serves_and_is_torn_down():
    """Test that each cluster actor serves the modules, runs in its own process, and
    every one is gone when the block ends."""
    with trio.fail_after(60):
        async with na.open_root_actor(registry_addrs=[testing.private_registry_addr()]):
            async with open_actor_cluster(__name__, count=3) as portals:
                assert list(portals) == ["worker_0", "worker_1", "worker_2"]
                answers = {name: await p.run(whoami) for name, p in portals.items()}
                assert {a[0] for a in answers.values()} == set(portals)
                pids = {a[1] for a in answers.values()}
                assert len(pids) == 3 and os.getpid() not in pids
    assert testing.wait_until_gone(pids) == []


def test_cluster_outside_runtime_with_names():
    """Test that a named cluster opened outside any runtime starts its own root."""

    async def main():
        async with open_actor_cluster(
            [__name__], names=["a", "b"], registry_addrs=[testing.private_registry_addr()]
        ) as portals:
            return sorted([(await p.run(whoami))[0] for p in portals.values()])

    assert trio.run(main) == ["a", "b"]


def test_default_is_one_per_core():
    """Test that the default size is one actor per CPU core."""
    assert len(_cluster_names(None, None)) == (os.cpu_count() or 1)
    assert _cluster_names(2, None) == ["worker_0", "worker_1"]


@pytest.mark.parametrize(
    "count, names, match",
    [
        (3, ["a", "b"], "count=3 but 2 names"),
        (None, ["a", "a"], "must be unique"),
        (0, None, "at least one"),
    ],
)
def test_bad_arguments(count, names, match):
    """Test that contradictory or empty cluster shapes are refused with a clear ValueError."""
    with pytest.raises(ValueError, match=match):
        _cluster_names(count, names)
