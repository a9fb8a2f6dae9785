"""The benchmark worker (bench/_worker.py): one real sample in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench._worker import RESULT_TAG

REPO = Path(__file__).resolve().parents[2]


def run_worker(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bench._worker", *args], cwd=REPO, capture_output=True, text=True, timeout=100
    )
    line = [ln for ln in out.stdout.splitlines() if ln.startswith(RESULT_TAG)][-1]
    return json.loads(line[len(RESULT_TAG) :])


def test_floor_ping_pong_sample_measures_round_trips():
    """Test that a floor RPC sample runs a real child over a Unix socket and reports a
    positive median no larger than its p99."""
    values = run_worker("floor", "rpc", "--quick")["values"]
    (med,), (p99,) = values["rpc_med_us"], values["rpc_p99_us"]
    assert 0 < med <= p99


def test_notebook_actors_rpc_sample_round_trips():
    """Test that the notebook_actors RPC sample calls a real actor and reports figures."""
    values = run_worker("notebook_actors", "rpc", "--quick")["values"]
    assert 0 < values["rpc_med_us"][0] <= values["rpc_p99_us"][0]


def test_peer_that_does_not_import_is_reported_not_crashed():
    """Test that --check names why a peer cannot run (tractor does not install in this
    venv) instead of failing."""
    result = run_worker("tractor", "--check")
    if result.get("unavailable") is None:  # someone installed tractor into this venv
        assert "spawn1" in result["figures"]
    else:
        assert "tractor" in result["unavailable"]
