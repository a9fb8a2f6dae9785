"""The bench's charts (bench/_charts.py) and its sample schedule (bench/__main__.py)."""

from __future__ import annotations

import pytest

from bench import _charts
from bench.__main__ import ROUND_CAP, plan_rounds
from bench._report import FLOOR, NA

REPORT = {
    "medians": {
        FLOOR: {"spawn1_ms": 100.0, "rpc_med_us": 80.0},
        NA: {"spawn1_ms": 12.0, "rpc_med_us": 130.0},
        "ipyparallel": {"spawn1_ms": 8000.0, "rpc_med_us": 140.0},
        "kernel": {"cell_local_ms": 3.0},
    },
    "rounds": 1,
    "machine": {"cores": 2, "load_avg_at_start": [0.5, 0.4, 0.3]},
}


def test_charts_are_written_as_png_and_svg_with_a_log_axis_across_decades(tmp_path, monkeypatch):
    """Test that draw() writes both files, one panel per measured figure, and that a
    panel spanning decades (12 ms .. 8 s) gets a log axis while a narrow one does not."""
    pytest.importorskip("matplotlib")
    scales = {}
    panel = _charts._panel

    def spy(ax, key, med):
        panel(ax, key, med)
        scales[key] = ax.get_xscale()

    monkeypatch.setattr(_charts, "_panel", spy)
    written = _charts.draw(REPORT, tmp_path / "bench")
    assert sorted(p.name for p in written) == ["bench.png", "bench.svg"]
    assert all(p.stat().st_size > 0 for p in written)
    assert scales == {"spawn1_ms": "log", "rpc_med_us": "linear"}


def test_rounds_interleave_the_peers_rotate_and_respect_caps():
    """Test that each round runs every peer's figures, the peer order rotates, and a
    capped (slow) figure runs only in its first rounds."""
    plan = {"floor": ["spawn1"], "ipyparallel": ["spawn1", "spawn10"]}
    schedule = plan_rounds(plan, rounds=3, quick=False)
    firsts = [next(p for r, p, _ in schedule if r == n) for n in range(3)]
    assert firsts == ["floor", "ipyparallel", "floor"]
    for peer, fig in (("ipyparallel", "spawn1"), ("ipyparallel", "spawn10"), ("floor", "spawn1")):
        runs = [r for r, p, f in schedule if (p, f) == (peer, fig)]
        assert runs == list(range(min(3, ROUND_CAP.get((peer, fig), 3))))
    assert ("ipyparallel", "spawn10") not in {(p, f) for _, p, f in plan_rounds(plan, 1, quick=True)}
