"""ipyparallel: a local cluster (controller + engines), calls through a DirectView.

Spawn-to-first-result includes starting the controller, as a user does with
``ipp.Cluster(n=1).start_and_connect_sync()``. It has no streams.
"""

from __future__ import annotations

import os
import uuid

from .._util import RPC_N, now, round_trip_summary, rss_of


def unavailable() -> str | None:
    try:
        import ipyparallel  # noqa: F401
    except ImportError as exc:
        return f"not installed ({exc}); pip install -e '.[bench]'"
    return None


def _cluster(n: int):
    import ipyparallel as ipp

    return ipp.Cluster(n=n, cluster_id=f"na-bench-{uuid.uuid4().hex[:8]}", log_level=40)


def _first_results(count: int) -> float:
    t0 = now()
    cluster = _cluster(count)
    try:
        rc = cluster.start_and_connect_sync()
        rc.wait_for_engines(count, timeout=120)
        assert rc[:].apply_sync(lambda x: x + 1, 1) == [2] * count
        elapsed = now() - t0
        rc.close()
    finally:
        cluster.stop_cluster_sync()
    return elapsed


def spawn1(quick: bool) -> dict:
    return {"spawn1_ms": [_first_results(1) * 1e3]}


def spawn10(quick: bool) -> dict:
    return {"spawn10_ms": [_first_results(10) * 1e3]}


def _with_engine(body):
    cluster = _cluster(1)
    try:
        rc = cluster.start_and_connect_sync()
        rc.wait_for_engines(1, timeout=120)
        view = rc[0]
        view.apply_sync(lambda: 0)
        try:
            return body(view)
        finally:
            rc.close()
    finally:
        cluster.stop_cluster_sync()


def rpc(quick: bool) -> dict:
    def body(view):
        times = []
        for i in range(RPC_N[quick] // 4 + 20):  # ms-scale calls: fewer of them
            t0 = now()
            assert view.apply_sync(lambda x: x + 1, i) == i + 1
            times.append(now() - t0)
        return times[20:]

    return round_trip_summary(_with_engine(body), "rpc")


def rss(quick: bool) -> dict:
    def body(view):
        pid = view.apply_sync(os.getpid)
        import time

        time.sleep(0.3)  # settle after start-up (not a measurement)
        return rss_of(pid)

    return _with_engine(body)


FIGURES = {"spawn1": spawn1, "spawn10": spawn10, "rpc": rpc, "rss": rss}
