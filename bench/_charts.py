"""Charts of the peer comparison: one panel per figure, a bar per peer.

Written as PNG and SVG next to the report's JSON (``python -m bench --charts JSON``
redraws them from a saved report). A panel whose values span more than a decade has
a log axis, so that ipyparallel's seconds do not flatten everyone else's
milliseconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._report import FLOOR, METRICS, NA, fmt

#: the panels, in reading order (metric keys of ``_report.METRICS``)
PANELS = (
    "spawn1_ms",
    "spawn10_ms",
    "rpc_med_us",
    "echo_med_us",
    "stream_msgs_s",
    "rss_mb",
    "uss_mb",
)
#: values spanning more than this factor get a log axis
LOG_SPAN = 10.0


def _colour(peer: str) -> str:
    if peer == NA:
        return "#d95f02"  # ours stands out
    if peer.startswith(NA):
        return "#fdae6b"
    if peer == FLOOR:
        return "#636363"
    return "#6baed6"


def draw(report: dict[str, Any], stem: Path) -> list[Path]:
    """Draw the comparison of ``report``; write ``stem``.png and ``stem``.svg.

    Returns:
        The files written (none when matplotlib is not installed or nothing was
        measured).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    med = report["medians"]
    panels = [k for k in PANELS if any(k in m for p, m in med.items() if p != "kernel")]
    if not panels:
        return []
    cols = 2
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(12, 2.6 * rows), squeeze=False)
    for ax, key in zip(axes.flat, panels, strict=False):
        _panel(ax, key, med)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    f = report["machine"]
    fig.suptitle(
        f"notebook_actors vs its peers — medians of one run, {report['rounds']} rounds; "
        f"{f['cores']} cores, load {f['load_avg_at_start'][0]:.1f} at start",
        fontsize=11,
    )
    fig.tight_layout()
    written = []
    for ext in ("png", "svg"):
        path = stem.with_suffix(f".{ext}")
        fig.savefig(path, dpi=110)
        written.append(path)
    plt.close(fig)
    return written


def _panel(ax: Any, key: str, med: dict[str, dict[str, float]]) -> None:
    label, unit, higher_is_better, _ = METRICS[key]
    peers = [p for p, m in med.items() if p != "kernel" and key in m]
    values = [med[p][key] for p in peers]
    bars = ax.barh(range(len(peers)), values, color=[_colour(p) for p in peers])
    ax.set_yticks(range(len(peers)), [p.replace("notebook_actors", "n_a") for p in peers], fontsize=8)
    ax.invert_yaxis()
    if min(values) > 0 and max(values) / min(values) > LOG_SPAN:
        ax.set_xscale("log")
        # a span of one or two decades gets labelled minor ticks too, and they collide
        from matplotlib.ticker import NullFormatter

        ax.xaxis.set_minor_formatter(NullFormatter())
    better = "higher is better" if higher_is_better else "lower is better"
    ax.set_title(f"{label.strip()} [{unit}] — {better}", fontsize=9)
    ax.tick_params(axis="x", labelsize=8)
    for bar, value in zip(bars, values, strict=True):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, " " + fmt(value, unit), va="center", fontsize=7)
    ax.margins(x=0.25)
