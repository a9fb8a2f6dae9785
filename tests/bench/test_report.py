"""The benchmark report (bench/_report.py): cost ratios, targets, tables."""

from __future__ import annotations

import pytest

from bench import _report
from bench._report import FLOOR, NA, SUB


def test_cost_ratio_is_above_one_when_worse_for_times_and_rates():
    """Test that the cost ratio is >1 for a slower time and for a lower rate alike."""
    assert _report.cost_ratio(200.0, 100.0, higher_is_better=False) == 2.0
    assert _report.cost_ratio(50_000.0, 100_000.0, higher_is_better=True) == 2.0
    assert _report.cost_ratio(None, 1.0, False) is None
    assert _report.cost_ratio(1.0, 0.0, False) is None


def _medians(**overrides):
    medians = {
        FLOOR: {"spawn1_ms": 100.0, "spawn10_ms": 1000.0, "rpc_med_us": 100.0, "echo_med_us": 100.0},
        NA: {"spawn1_ms": 12.0, "spawn10_ms": 160.0, "rpc_med_us": 140.0, "rss_mb": 24.0, "uss_mb": 9.0},
        SUB: {"spawn1_ms": 110.0, "rss_mb": 30.0},
    }
    for peer, values in overrides.items():
        medians.setdefault(peer, {}).update(values)
    return medians


def test_targets_say_met_missed_or_pending():
    """Test that each target is judged against its own floor: met, missed, or pending
    when a figure is missing (the kernel here)."""
    status = {t["target"]: t["status"] for t in _report.targets(_medians())}
    assert status["spawn → first result ≤ 0.2× bare interpreter"] == "met"  # 0.12x
    assert status["ten actors at once ≤ 0.15× ten bare interpreters"] == "missed"  # 0.16x
    assert status["RPC median ≤ 1.1× raw trio ping-pong"] == "missed"  # 1.4x
    assert status["idle actor < 25 MB RSS"] == "met"
    assert status["idle actor USS < 8 MB"] == "missed"
    assert status["kernel idle CPU < 1% (ext + 10 actors)"] == "pending"


def _report_for(medians, notes=None):
    samples = {p: {k: [v] for k, v in m.items()} for p, m in medians.items()}
    facts = {
        "cpu": "test cpu",
        "cores": 2,
        "memory_gb": 1.0,
        "os": "Linux",
        "python": "3.11",
        "load_avg_at_start": (0.0, 0.0, 0.0),
    }
    return _report.build_report(samples, {"tractor": "does not import here"}, notes or {}, facts, 1, True, 1.0)


def test_tables_show_every_peer_ratios_and_skips():
    """Test that the printed report and the Markdown carry each peer, the ratio against
    the floor, the targets and why a peer was skipped."""
    report = _report_for(_medians())
    text = "\n".join(_report.render(report))
    for word in ("floor", "n_a", "n_a/subprocess", "Targets", "skipped tractor: does not import here"):
        assert word in text
    md = _report.render_markdown(report)
    assert "| RPC round trip, median [µs] | 100 | 140 (1.40×) |" in md
    assert "| RPC median ≤ 1.1× raw trio ping-pong | 1.40 | ≤ 1.1 × | missed |" in md


@pytest.mark.parametrize("value, text", [(None, "—"), (1234.5, "1,234"), (150_000.0, "150.0k")])
def test_fmt(value, text):
    """Test that numbers are shown with sensible precision and a dash when missing."""
    unit = "msg/s" if value == 150_000.0 else ""
    assert _report.fmt(value, unit) == text
