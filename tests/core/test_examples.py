"""The examples run as scripts (python examples/...), print what they promise and
leave no process behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from notebook_actors import testing

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "parallelism"


def run_example(name: str) -> str:
    result = testing.run_example(str(EXAMPLES / name), timeout=100)
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def test_single_func():
    """Test that single_func.py gets a function's result from another process."""
    out = run_example("single_func.py")
    line = out.strip().splitlines()[-1]
    assert f"got {sum(i * i for i in range(1_000_000))} from an actor" in line
    root_pid, child_pid = (int(part.split(")")[0]) for part in line.split("pid ")[1:])
    assert root_pid != child_pid


def test_we_are_processes():
    """Test that we_are_processes.py starts a worker per CPU, tears the tree down after
    the planted failure and finds no process left."""
    out = run_example("we_are_processes.py")
    workers = os.cpu_count() or 1
    pids = {line.split()[-1] for line in out.splitlines() if line.startswith("worker ")}
    assert len(pids) == workers, out  # (it failed once in CI: the output says how)
    assert f"{workers} workers up" in out
    assert "tore itself down: RuntimeError from self_destruct" in out
    assert out.strip().endswith("Zombies Contained")


def test_concurrent_actors_primes():
    """Test that concurrent_actors_primes.py gives the stdlib example's answers, in order."""
    out = run_example("concurrent_actors_primes.py")
    lines = out.strip().splitlines()
    assert lines[:6] == [
        "112272535095293 is prime: True",
        "112582705942171 is prime: True",
        "112272535095293 is prime: True",
        "115280095190773 is prime: True",
        "115797848077099 is prime: True",
        "1099726899285419 is prime: False",
    ]
    assert lines[6].startswith("6 numbers on ")


if not EXAMPLES.is_dir():  # pragma: no cover
    pytestmark = pytest.mark.skip("examples/ is not part of this checkout")
