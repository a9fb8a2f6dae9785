"""The scripts in examples/asyncio/ run to completion and print what they promise."""

from __future__ import annotations

from pathlib import Path

import pytest

from notebook_actors import testing

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "asyncio"

EXPECTED = {
    "echo_server.py": ["echoed 0", "echoed 9"],
    "aio_from_trio.py": ["double: 42", "error type: ValueError", "asyncio task cancelled by trio", "timeout: gave up"],
    "asyncio_host.py": ["root actor: asyncio_host infected: True", "cubes: [1, 8, 27]", "tree closed: True"],
    "infected_root.py": ["first: ready", "squares: [0, 1, 4, 9, 16]"],
}


def test_every_example_is_covered():
    """Test that each script in examples/asyncio/ has expectations here."""
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_runs(script):
    """Test that the example exits 0 and prints its expected lines."""
    done = testing.run_example(str(EXAMPLES / script), timeout=90)
    lines = done.stdout.splitlines()
    for line in EXPECTED[script]:
        assert line in lines, f"{script} did not print {line!r}:\n{done.stdout}\n{done.stderr}"
