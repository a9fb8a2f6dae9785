"""Turn the samples into the report: medians, cost ratios, targets; print it."""

from __future__ import annotations

from typing import Any

from ._util import median

NA, SUB, FLOOR = "notebook_actors", "notebook_actors/subprocess", "floor"

#: metric → (label, unit, higher_is_better, the floor metric it is compared with)
METRICS: dict[str, tuple[str, str, bool, str | None]] = {
    "spawn1_ms": ("spawn → first result, 1 actor", "ms", False, "spawn1_ms"),
    "spawn1_root_ms": ("  same, incl. root start", "ms", False, "spawn1_ms"),
    "spawn10_ms": ("spawn → all results, 10 actors", "ms", False, "spawn10_ms"),
    "spawn_nested_ms": ("nested spawn root → a → b, b's result", "ms", False, "spawn1_ms"),
    "rpc_med_us": ("RPC round trip, median", "µs", False, "rpc_med_us"),
    "rpc_p99_us": ("RPC round trip, p99", "µs", False, "rpc_p99_us"),
    "rpc_reader_task_med_us": ("  floor's ping-pong via a reader task, median", "µs", False, "rpc_med_us"),
    "stream_msgs_s": ("one-way stream", "msg/s", True, "stream_msgs_s"),
    "stream_batched_msgs_s": ("one-way stream, batched writes", "msg/s", True, "stream_batched_msgs_s"),
    "echo_med_us": ("echo round trip (stream), median", "µs", False, "echo_med_us"),
    "echo_p99_us": ("echo round trip (stream), p99", "µs", False, "echo_p99_us"),
    "rss_mb": ("idle actor RSS", "MB", False, "rss_mb"),
    "uss_mb": ("idle actor USS (unique pages)", "MB", False, "uss_mb"),
    "fanout_spawn_per_actor_ms": ("fan-out: spawn → result, per actor", "ms", False, None),
    "fanout_teardown_ms": ("fan-out: teardown, all actors", "ms", False, None),
    "fanout_rss_mb": ("fan-out: RSS per actor", "MB", False, None),
    "fanout_uss_mb": ("fan-out: USS per actor", "MB", False, None),
}
KERNEL_METRICS: dict[str, tuple[str, str]] = {
    "cell_local_ms": ("trivial cell, local", "ms"),
    "cell_actor_ms": ("trivial cell, %%actor", "ms"),
    "cell_actor_overhead_ms": ("%%actor minus local", "ms"),
    "cell_px_ms": ("trivial cell, ipyparallel %%px (1 engine)", "ms"),
    "cell_new_actor_ms": ("%%actor cell in a new actor (spawn + run)", "ms"),
    "cell_new_actor_trio_ms": ("  same, subprocess backend", "ms"),
    "cell_new_nested_ms": ("%%actor a/b cell, a and b new (two spawns + run)", "ms"),
    "cell_new_nested_trio_ms": ("  same, subprocess backend", "ms"),
    "kernel_idle_cpu_pct": ("kernel idle CPU, ext + 10 idle actors", "%"),
    "actors_idle_cpu_pct": ("those 10 actors' idle CPU, total", "%"),
}


def cost_ratio(value: float | None, ref: float | None, higher_is_better: bool) -> float | None:
    """>1 means worse than the reference (slower, or bigger), whatever the unit."""
    if value is None or ref is None or value == 0 or ref == 0:
        return None
    return ref / value if higher_is_better else value / ref


def build_report(samples, skipped, notes, facts, rounds, quick, seconds) -> dict[str, Any]:
    medians = {p: {k: median(v) for k, v in m.items() if v} for p, m in samples.items()}
    counts = {p: {k: len(v) for k, v in m.items()} for p, m in samples.items()}
    floor = medians.get(FLOOR, {})
    vs_floor = {
        p: {k: cost_ratio(v, floor.get(METRICS[k][3] or ""), METRICS[k][2]) for k, v in m.items() if k in METRICS}
        for p, m in medians.items()
    }
    ours = medians.get(NA, {})
    vs_peers = {
        p: {k: cost_ratio(ours.get(k), v, METRICS[k][2]) for k, v in m.items() if k in METRICS}
        for p, m in medians.items()
        if p not in (NA,)
    }
    return {
        "machine": facts,
        "rounds": rounds,
        "quick": quick,
        "seconds": round(seconds, 1),
        "medians": medians,
        "samples": counts,
        "cost_vs_floor": vs_floor,
        "notebook_actors_cost_vs_peer": vs_peers,
        "targets": targets(medians),
        "skipped": skipped,
        "notes": notes,
    }


def targets(m: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """Issue 20's targets for the default backend, each with what was measured in this
    run and whether it is met."""
    na, fl, k = m.get(NA, {}), m.get(FLOOR, {}), m.get("kernel", {})

    def ratio(a, b):
        return None if a is None or b is None else a / b

    rows = [
        (
            "spawn → first result ≤ 0.2× bare interpreter",
            ratio(na.get("spawn1_ms"), fl.get("spawn1_ms")),
            "≤",
            0.2,
            "×",
        ),
        (
            "ten actors at once ≤ 0.15× ten bare interpreters",
            ratio(na.get("spawn10_ms"), fl.get("spawn10_ms")),
            "≤",
            0.15,
            "×",
        ),
        ("%%actor cell in a new actor ≤ 30 ms", k.get("cell_new_actor_ms"), "≤", 30, "ms"),
        ("trivial %%actor cell ≤ 1 ms over local", k.get("cell_actor_overhead_ms"), "≤", 1, "ms"),
        ("idle actor < 25 MB RSS", na.get("rss_mb"), "<", 25, "MB"),
        ("idle actor USS < 8 MB", na.get("uss_mb"), "<", 8, "MB"),
        ("RPC median ≤ 1.1× raw trio ping-pong", ratio(na.get("rpc_med_us"), fl.get("rpc_med_us")), "≤", 1.1, "×"),
        ("kernel idle CPU < 1% (ext + 10 actors)", k.get("kernel_idle_cpu_pct"), "<", 1, "%"),
    ]
    out = []
    for what, value, op, goal, unit in rows:
        if value is None:
            status = "pending"
        else:
            ok = {"≤": value <= goal, "<": value < goal, "≥": value >= goal}[op]
            status = "met" if ok else "missed"
        out.append({"target": what, "measured": value, "goal": f"{op} {goal:g} {unit}", "status": status})
    return out


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    if unit == "msg/s":
        return f"{value / 1000:,.1f}k"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _table(title: str, peers: list[str], rows: list[tuple[str, list[str]]]) -> list[str]:
    short = [p.replace("notebook_actors", "n_a") for p in peers]
    width = max(9, *(len(s) for s in short))
    label_w = max(len(r[0]) for r in rows) if rows else 10
    out = [title, " " * label_w + " | " + " | ".join(s.rjust(width) for s in short)]
    out.append("-" * len(out[-1]))
    for label, cells in rows:
        out.append(label.ljust(label_w) + " | " + " | ".join(c.rjust(width) for c in cells))
    return out


def render(report: dict[str, Any]) -> list[str]:
    med = report["medians"]
    peers = [p for p in med if p != "kernel"]
    lines: list[str] = []
    value_rows = []
    for key, (label, unit, _hib, _) in METRICS.items():
        if any(key in med[p] for p in peers):
            value_rows.append((f"{label} [{unit}]", [fmt(med[p].get(key), unit) for p in peers]))
    lines += _table("Medians (n_a = notebook_actors)", peers, value_rows)
    ratio_rows = []
    for key, (label, _unit, _hib, _) in METRICS.items():
        if any(key in med[p] for p in peers):
            cells = [fmt(report["cost_vs_floor"][p].get(key)) for p in peers]
            if set(cells) != {"—"}:
                ratio_rows.append((label, cells))
    lines += ["", *_table("Cost vs the floor (× floor; >1 = slower or bigger)", peers, ratio_rows)]
    others = [p for p in peers if p != NA]
    vs_rows = []
    for key, (label, _unit, _hib, _) in METRICS.items():
        if key in med.get(NA, {}):
            cells = [fmt(report["notebook_actors_cost_vs_peer"][p].get(key)) for p in others]
            if set(cells) != {"—"}:
                vs_rows.append((label, cells))
    lines += [
        "",
        *_table("notebook_actors cost vs each peer (<1 = notebook_actors is faster/smaller)", others, vs_rows),
    ]
    k = med.get("kernel", {})
    if k or "kernel" in report["notes"]:
        lines += ["", "In a Jupyter kernel (execute_request → execute_reply)"]
        for key, (label, unit) in KERNEL_METRICS.items():
            lines.append(f"  {label:45s} {fmt(k.get(key)):>10} {unit}")
    lines += ["", "Targets (issue 20, default backend)"]
    for t in report["targets"]:
        lines.append(f"  [{t['status']:>7}] {t['target']:45s} measured {fmt(t['measured']):>10}  goal {t['goal']}")
    for peer, why in report["skipped"].items():
        lines.append(f"  skipped {peer}: {why}")
    for peer, notes in report["notes"].items():
        for note in notes:
            lines.append(f"  note {peer}: {note}")
    f = report["machine"]
    lines += [
        "",
        f"Machine: {f['cpu']}, {f['cores']} cores, {f['memory_gb']} GB, {f['os']}, Python {f['python']}; "
        f"load average at start {', '.join(f'{x:.2f}' for x in f['load_avg_at_start'])}",
        f"{report['rounds']} rounds{' (quick)' if report['quick'] else ''}, {report['seconds']:.0f} s",
    ]
    return lines


def print_report(report: dict[str, Any]) -> None:
    print("\n".join(render(report)))


def render_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown tables (for docs/performance.md and the README)."""
    med = report["medians"]
    peers = [p for p in med if p != "kernel"]
    out = ["| figure | " + " | ".join(peers) + " |", "|---|" + "---:|" * len(peers)]
    for key, (label, unit, _, _) in METRICS.items():
        if not any(key in med[p] for p in peers):
            continue
        cells = []
        for p in peers:
            value = med[p].get(key)
            ratio = report["cost_vs_floor"][p].get(key)
            cell = fmt(value, unit)
            if value is not None and p != FLOOR and ratio is not None:
                cell += f" ({fmt(ratio)}×)"
            cells.append(cell)
        out.append(f"| {label.strip()} [{unit}] | " + " | ".join(cells) + " |")
    out += ["", "(×) = cost relative to the floor: above 1 is slower or bigger, whatever the unit.", ""]
    k = med.get("kernel", {})
    if k:
        out += ["| in a Jupyter kernel | |", "|---|---:|"]
        for key, (label, unit) in KERNEL_METRICS.items():
            if key in k:
                out.append(f"| {label.strip()} | {fmt(k[key])} {unit} |")
        out.append("")
    out += ["| target (issue 20, default backend) | measured | goal | status |", "|---|---:|---|---|"]
    for t in report["targets"]:
        out.append(f"| {t['target']} | {fmt(t['measured'])} | {t['goal']} | {t['status']} |")
    f = report["machine"]
    out += [
        "",
        f"Machine: {f['cpu']}, {f['cores']} cores, {f['memory_gb']} GB RAM, {f['os']}, Python {f['python']}; "
        f"load average at start {', '.join(f'{x:.2f}' for x in f['load_avg_at_start'])}. "
        f"{report['rounds']} rounds{' (quick)' if report['quick'] else ''} in {report['seconds']:.0f} s.",
    ]
    return "\n".join(out)
