"""The scripts in examples/streaming run to completion and print what they promise."""

from __future__ import annotations

from pathlib import Path

import pytest

from notebook_actors import testing

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "streaming"

EXPECTED = {
    "fan_out_service.py": [
        "feed started at 100.0",
        "feed sent 1000 ticks",
        "local consumers: count=1000 high=139.445 low=99.9",
        "remote consumer average: 118.5927",
    ],
    "bidirectional_rpc.py": [
        "calculator offers ['add', 'div', 'mul']",
        "answered 101 requests",
        "request 7 (div) -> 3.5",
        "request 100 -> ZeroDivisionError: float division by zero",
        "malformed request -> Expected `float`, got `str` - at `$.a`",
    ],
    "multiple_streams.py": [
        "sum of squares: 333283335000",
        "letters: notebook actors",
        "countdown: [5, 4, 3, 2, 1, 0]",
        "shout: MANY STREAMS ONE PORTAL",
    ],
}


def test_every_streaming_example_is_checked():
    """Test that each script in examples/streaming has expectations here."""
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_streaming_example_runs(name):
    """Test that the example exits 0 and prints its expected lines."""
    result = testing.run_example(str(EXAMPLES / name), timeout=90)
    lines = result.stdout.splitlines()
    for line in EXPECTED[name]:
        assert line in lines, (line, result.stdout, result.stderr)
