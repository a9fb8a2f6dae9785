"""The helpers in notebook_actors.testing: record / wait_recorded (inside actors),
run_example and trio_test."""

from __future__ import annotations

from functools import partial

import pytest
import trio

import notebook_actors as na
from notebook_actors import testing


async def record_my_name(key: str) -> None:
    testing.record(key, na.current_actor().name)


def test_a_test_reads_back_what_an_actor_recorded(reg):
    """Test that a value recorded in an actor is read back by wait_recorded and recorded
    there, and that an unrecorded key reads as None."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("rec", enable_modules=[__name__, testing.RECORDER])
            async with trio.open_nursery() as tn:
                tn.start_soon(partial(portal.run, record_my_name, key="who"))
                assert await portal.run(testing.wait_recorded, key="who") == "rec"
            assert await portal.run(testing.recorded, key="who") == "rec"
            assert await portal.run(testing.recorded, key="nobody") is None
            await portal.cancel_actor()

    trio.run(main)


def test_reading_records_needs_the_recorder_enabled(reg):
    """Test that reading records from an actor without RECORDER in enable_modules is
    refused with an error naming the module to enable."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("closed", enable_modules=[__name__])
            with pytest.raises(na.RemoteActorError, match=r"enable_modules=.'notebook_actors.testing._record'") as info:
                await portal.run(testing.recorded, key="who")
            assert info.value.type is na.ModuleNotExposed
            await portal.cancel_actor()

    trio.run(main)


def test_run_example_gives_each_run_its_own_registry(tmp_path):
    """Test that run_example hands each script a fresh private registry address."""
    script = tmp_path / "show_registry.py"
    script.write_text("import os\nprint(os.environ['NOTEBOOK_ACTORS_REGISTRY'])\n")
    first, second = (testing.run_example(str(script)).stdout.strip() for _ in range(2))
    assert first.startswith("uds:") and second.startswith("uds:")
    assert first != second


def test_run_example_fails_with_the_scripts_stderr(tmp_path):
    """Test that a script exiting non-zero makes run_example raise AssertionError with
    the exit code and what the script wrote to stderr."""
    script = tmp_path / "broken.py"
    script.write_text("import sys\nsys.exit('the example broke')\n")
    with pytest.raises(AssertionError, match="exited 1:\nthe example broke"):
        testing.run_example(str(script))


@pytest.fixture
def answer() -> int:
    return 42


@testing.trio_test
async def test_trio_test_runs_the_coroutine_with_fixtures(answer):
    """Test that trio_test runs an async test under trio with its fixtures injected."""
    await trio.lowlevel.checkpoint()
    assert answer == 42
    assert trio.lowlevel.current_root_task() is not None
