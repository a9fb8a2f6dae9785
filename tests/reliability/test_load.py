"""Light versions of the load benchmark (``bench/load.py``) as correctness tests:
many actors alive at once, many concurrent RPCs, a long stream to a slow consumer,
many concurrent contexts. No timing assertions: the scenarios check their results."""

from __future__ import annotations

import pytest
import trio

import notebook_actors as na
from notebook_actors.testing import _load

pytestmark = pytest.mark.usefixtures("no_fd_leak")


def _run(reg, scenario, *args, **kwargs) -> _load.Figures:
    async def main() -> _load.Figures:
        with trio.fail_after(100):  # hang guard
            return await scenario(*args, **kwargs)

    return na.run(main, **reg)


def test_twenty_actors_alive_at_once_each_answer(reg):
    """Test that 20 actors spawned in batches of 5 are alive together and each answers."""
    figures = _run(reg, _load.many_actors, 20, batch=5)
    assert figures.notes["alive"] == 20


def test_two_hundred_concurrent_rpcs_to_one_actor(reg):
    """Test that 200 RPCs in flight at once to one actor all get their own answer."""
    assert _run(reg, _load.concurrent_rpcs, 200).notes["calls_per_s"] > 0


def test_a_long_stream_to_a_slow_consumer_arrives_in_order(reg):
    """Test that 20,000 messages to a consumer that naps arrive complete and in order
    (the scenario checks every value)."""
    figures = _run(reg, _load.slow_consumer, 20_000, pause_every=500)
    assert figures.notes["producer_rss_last_mb"] > 0


def test_ten_concurrent_contexts_between_two_actors(reg):
    """Test that 10 contexts open at once on one actor each echo their own stream."""
    assert _run(reg, _load.concurrent_contexts, 10, messages=50).notes["round_trips_per_s"] > 0
