"""The scripts in examples/tractor_compat (tractor's calls, ``import notebook_actors as
tractor``) run to completion and print what they promise."""

from __future__ import annotations

from pathlib import Path

import pytest

from notebook_actors import testing

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "tractor_compat"

EXPECTED = {
    "actor_tree.py": [
        "worker says it is worker (root: False)",
        "worker cubes 5: 125",
        "run_in_actor result: 27",
        "grandchild result: 64",
        "the tree came down: ValueError from explode",
    ],
    "discovery.py": [
        "hello caller, from greeter",
        "found greeter: True",
        "found nobody: False",
        "registry lists root and greeter: True",
    ],
    "log_levels.py": [
        "root shows: runtime, cancel, info, pdb, devx",
        "worker shows: cancel, info, pdb, devx",
        "after get_console_log('devx'): devx",
    ],
    "pubsub.py": [
        "even subscriber: True 5",
        "odd subscriber: True 5",
    ],
    "streams.py": [
        "fibonacci: [0, 1, 1, 2, 3, 5, 8, 13, 21, 34]",
        "callee started with: ready",
        "echo: ACTORS",
        "echo: ALL",
        "echo: THE",
        "echo: WAY",
        "echo: DOWN",
        "callee answered 5 messages",
    ],
}


def test_every_tractor_compat_example_is_checked():
    """Test that each script in examples/tractor_compat has expectations here."""
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_tractor_compat_example(name):
    """Test that the script runs unchanged under `import notebook_actors as tractor`,
    prints exactly its promised lines and leaves no process behind."""
    source = (EXAMPLES / name).read_text()
    assert "import notebook_actors as tractor" in source
    result = testing.run_example(str(EXAMPLES / name), timeout=100)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout.strip().splitlines() == EXPECTED[name]
