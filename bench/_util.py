"""Small helpers shared by the peers: statistics, timers, memory, sockets."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Sequence

now = time.perf_counter

#: Messages in one streaming sample, and calls in one RPC sample (full / quick).
STREAM_N = {False: 200_000, True: 30_000}
RPC_N = {False: 2000, True: 500}
#: Repetitions of a spawn inside one sample (each a fresh process).
SPAWN_REPS = {False: 3, True: 2}


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def p99(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def round_trip_summary(per_call_s: Sequence[float], prefix: str) -> dict[str, list[float]]:
    """Median and p99 (µs) of one sample of round trips."""
    us = [v * 1e6 for v in per_call_s]
    return {f"{prefix}_med_us": [median(us)], f"{prefix}_p99_us": [p99(us)]}


def rss_of(pid: int) -> dict[str, list[float]]:
    """Resident and unique memory of one process, in MB (USS counts pages shared with a
    fork parent only once, which matters for forked actors)."""
    import psutil

    info = psutil.Process(pid).memory_full_info()
    return {"rss_mb": [info.rss / 1e6], "uss_mb": [info.uss / 1e6]}


def private_sock_path(tag: str) -> str:
    d = tempfile.mkdtemp(prefix="na-bench-")
    os.chmod(d, 0o700)
    return os.path.join(d, f"{tag}.sock")
