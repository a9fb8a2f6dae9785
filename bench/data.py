"""``python -m bench.data [--quick] [--no-ipp]``

Data figures (issue 15): numpy arrays of 1 KiB, 1 MiB, 64 MiB and 256 MiB sent one
way (to a function that takes the array and returns its size) and on a round trip
(the array comes back), and a stream of 1,000 × 1 MiB arrays, for notebook_actors and,
in the same run, the floor and its peers:

- ``memcpy``: a warm ``np.copyto`` of the same array (the physical floor on one host);
- ``mp.Pipe`` / ``mp.Queue``: multiprocessing's pickling pipes, to a spawned process;
- ``mp.shm``: ``multiprocessing.shared_memory`` with a hand-written copy into a warm
  segment and a Pipe message saying where it is (what a careful user writes);
- ``ipyparallel``: a one-engine cluster's ``apply_sync`` (zero-copy buffers over zmq).

Each figure is the median of its repetitions, printed as GB/s; then the ratios
against memcpy and Pipe, the receiver's peak-RSS growth for a 256 MiB array, and the
targets of the issue.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import statistics
import time
from collections.abc import Callable
from multiprocessing import shared_memory
from typing import Any

import numpy as np

KiB, MiB = 1024, 1024 * 1024
SIZES = [("1 KiB", KiB), ("1 MiB", MiB), ("64 MiB", 64 * MiB), ("256 MiB", 256 * MiB)]
#: Repetitions per size (full / quick); large sizes take a few of them.
REPS = {False: {KiB: 300, MiB: 60, 64 * MiB: 8, 256 * MiB: 5}, True: {KiB: 100, MiB: 20, 64 * MiB: 4, 256 * MiB: 3}}
STREAM = (1000, MiB)
now = time.perf_counter


def _array(nbytes: int) -> np.ndarray:
    return np.arange(nbytes // 8, dtype=np.float64)


def _median_time(op: Callable[[], Any], reps: int, warm: int = 1) -> float:
    for _ in range(warm):
        op()
    times = []
    for _ in range(reps):
        t0 = now()
        op()
        times.append(now() - t0)
    return statistics.median(times)


# -- the functions the actors run ------------------------------------------------------


def sink(arr: Any) -> int:
    return int(arr.nbytes)


def echo(arr: Any) -> Any:
    return arr


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith(field + ":"))
    return int(line.split()[1]) * 1024


def rss_bytes() -> int:
    """The process's RSS now, in bytes; its peak (``VmHWM``) is reset to it, so that
    :func:`touch` reports the high-water mark of what happened in between."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_bytes("VmRSS")


def touch(arr: Any) -> int:
    """Read every page of the received array (so all of it is resident), then report
    the process's peak RSS in bytes since :func:`rss_bytes` (a transient second copy
    made while receiving counts)."""
    flat = arr.reshape(-1)
    float(flat[:: 4096 // flat.itemsize].sum())
    return _status_bytes("VmHWM")


async def arrays(count: int, nbytes: int):
    arr = _array(nbytes)
    for _ in range(count):
        yield arr


# -- notebook_actors ---------------------------------------------------------------------


def bench_notebook_actors(quick: bool) -> dict[str, float]:
    import trio

    import notebook_actors as na

    # by their importable name (run as ``python -m bench.data`` this module is __main__)
    from bench import data as fns
    from notebook_actors import testing

    out: dict[str, float] = {}

    async def main() -> None:
        async with na.open_nursery(registry_addrs=[testing.private_registry_addr()]) as n:
            portal = await n.start_actor("data", enable_modules=["bench.data"])
            for label, nbytes in SIZES:
                arr = _array(nbytes)
                reps = REPS[quick][nbytes]
                out[f"one way {label}"] = nbytes / await _atime(lambda a=arr: portal.run(fns.sink, arr=a), reps)
                out[f"round trip {label}"] = nbytes / await _atime(lambda a=arr: portal.run(fns.echo, arr=a), reps)
            out["stream 1000 x 1 MiB"] = await _stream(portal)
            await portal.cancel_actor()
            probe = await n.start_actor("rss", enable_modules=["bench.data"])
            before = await probe.run(fns.rss_bytes)
            after = await probe.run(fns.touch, arr=_array(256 * MiB))
            out["rss growth 256 MiB"] = (after - before) / (256 * MiB)
            await probe.cancel_actor()

    async def _stream(portal: Any) -> float:
        count, nbytes = STREAM
        t0 = now()
        got = 0
        async with portal.open_stream_from(fns.arrays, count=count, nbytes=nbytes) as stream:
            async for arr in stream:
                got += arr.nbytes
        return got / (now() - t0)

    trio.run(main)
    return out


async def _atime(op: Callable[[], Any], reps: int) -> float:
    await op()
    times = []
    for _ in range(reps):
        t0 = now()
        await op()
        times.append(now() - t0)
    return statistics.median(times)


# -- multiprocessing -------------------------------------------------------------------


def _pipe_child(conn: Any) -> None:
    while True:
        kind, arr = conn.recv()
        if kind == "stop":
            return
        if kind == "stream":
            for _ in range(STREAM[0]):
                conn.send(arr)
            continue
        conn.send(arr if kind == "echo" else arr.nbytes)


def _queue_child(inq: Any, outq: Any) -> None:
    while True:
        kind, arr = inq.get()
        if kind == "stop":
            return
        if kind == "stream":
            for _ in range(STREAM[0]):
                outq.put(arr)
            continue
        outq.put(arr if kind == "echo" else arr.nbytes)


def _shm_child(conn: Any, name_in: str, name_out: str) -> None:
    seg_in = shared_memory.SharedMemory(name=name_in)
    seg_out = shared_memory.SharedMemory(name=name_out)
    try:
        while True:
            kind, n = conn.recv()
            if kind == "stop":
                return
            arr = np.ndarray((n // 8,), dtype=np.float64, buffer=seg_in.buf)
            if kind == "echo":
                np.copyto(np.ndarray((n // 8,), dtype=np.float64, buffer=seg_out.buf), arr)
            conn.send(n)
            del arr
    finally:
        seg_in.close()
        seg_out.close()


def bench_pipe(quick: bool) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_pipe_child, args=(child,), daemon=True)
    proc.start()
    out: dict[str, float] = {}

    def call(kind: str, arr: np.ndarray) -> Any:
        parent.send((kind, arr))
        return parent.recv()

    try:
        for label, nbytes in SIZES:
            arr, reps = _array(nbytes), REPS[quick][nbytes]
            out[f"one way {label}"] = nbytes / _median_time(lambda a=arr: call("sink", a), reps)
            out[f"round trip {label}"] = nbytes / _median_time(lambda a=arr: call("echo", a), reps)
        arr = _array(STREAM[1])
        t0 = now()
        parent.send(("stream", arr))
        for _ in range(STREAM[0]):
            parent.recv()
        out["stream 1000 x 1 MiB"] = STREAM[0] * STREAM[1] / (now() - t0)
        parent.send(("stop", None))
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
    return out


def bench_queue(quick: bool) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    inq, outq = ctx.Queue(), ctx.Queue()
    proc = ctx.Process(target=_queue_child, args=(inq, outq), daemon=True)
    proc.start()
    out: dict[str, float] = {}

    def call(kind: str, arr: np.ndarray) -> Any:
        inq.put((kind, arr))
        return outq.get()

    try:
        for label, nbytes in SIZES:
            arr, reps = _array(nbytes), REPS[quick][nbytes]
            out[f"one way {label}"] = nbytes / _median_time(lambda a=arr: call("sink", a), reps)
            out[f"round trip {label}"] = nbytes / _median_time(lambda a=arr: call("echo", a), reps)
        arr = _array(STREAM[1])
        t0 = now()
        inq.put(("stream", arr))
        for _ in range(STREAM[0]):
            outq.get()
        out["stream 1000 x 1 MiB"] = STREAM[0] * STREAM[1] / (now() - t0)
        inq.put(("stop", None))
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
    return out


def bench_shm(quick: bool) -> dict[str, float]:
    biggest = SIZES[-1][1]
    seg_in = shared_memory.SharedMemory(create=True, size=biggest)
    seg_out = shared_memory.SharedMemory(create=True, size=biggest)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_shm_child, args=(child, seg_in.name, seg_out.name), daemon=True)
    proc.start()
    views = {
        "in": np.ndarray((biggest // 8,), dtype=np.float64, buffer=seg_in.buf),
        "out": np.ndarray((biggest // 8,), dtype=np.float64, buffer=seg_out.buf),
    }
    for view in views.values():
        view[:] = 0  # warm segments: the copy below is the hand-written one
    out: dict[str, float] = {}

    def one_way(arr: np.ndarray) -> None:
        np.copyto(views["in"][: arr.size], arr)
        parent.send(("sink", arr.nbytes))
        parent.recv()

    def round_trip(arr: np.ndarray) -> np.ndarray:
        np.copyto(views["in"][: arr.size], arr)
        parent.send(("echo", arr.nbytes))
        parent.recv()
        return views["out"][: arr.size]

    try:
        for label, nbytes in SIZES:
            arr, reps = _array(nbytes), REPS[quick][nbytes]
            out[f"one way {label}"] = nbytes / _median_time(lambda a=arr: one_way(a), reps)
            out[f"round trip {label}"] = nbytes / _median_time(lambda a=arr: round_trip(a), reps)
        parent.send(("stop", 0))
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
        views.clear()  # no view of the segments may outlive them
        for seg in (seg_in, seg_out):
            seg.close()
            seg.unlink()
    return out


def bench_memcpy(quick: bool) -> dict[str, float]:
    out: dict[str, float] = {}
    for label, nbytes in SIZES:
        arr, dst = _array(nbytes), np.empty(nbytes // 8)
        secs = _median_time(lambda a=arr, d=dst: np.copyto(d, a), REPS[quick][nbytes], warm=2)
        out[f"one way {label}"] = nbytes / secs
        out[f"round trip {label}"] = nbytes / (2 * secs)
    arr, dst = _array(STREAM[1]), np.empty(STREAM[1] // 8)
    t0 = now()
    for _ in range(STREAM[0]):
        np.copyto(dst, arr)
    out["stream 1000 x 1 MiB"] = STREAM[0] * STREAM[1] / (now() - t0)
    return out


def bench_ipyparallel(quick: bool) -> dict[str, float]:
    import uuid

    import ipyparallel as ipp

    cluster = ipp.Cluster(n=1, cluster_id=f"na-data-{uuid.uuid4().hex[:8]}", log_level=40)
    out: dict[str, float] = {}
    try:
        rc = cluster.start_and_connect_sync()
        rc.wait_for_engines(1, timeout=120)
        view = rc[0]
        try:
            for label, nbytes in SIZES:
                arr, reps = _array(nbytes), max(2, REPS[quick][nbytes] // 3)
                out[f"one way {label}"] = nbytes / _median_time(lambda a=arr: view.apply_sync(sink, a), reps)
                out[f"round trip {label}"] = nbytes / _median_time(lambda a=arr: view.apply_sync(echo, a), reps)
        finally:
            rc.close()
    finally:
        cluster.stop_cluster_sync()
    return out


# -- the report --------------------------------------------------------------------------

PEERS: dict[str, Callable[[bool], dict[str, float]]] = {
    "memcpy": bench_memcpy,
    "notebook_actors": bench_notebook_actors,
    "mp.Pipe": bench_pipe,
    "mp.Queue": bench_queue,
    "mp.shm": bench_shm,
    "ipyparallel": bench_ipyparallel,
}
ROWS = [f"{kind} {label}" for label, _ in SIZES for kind in ("one way", "round trip")] + ["stream 1000 x 1 MiB"]


def _gbps(bytes_per_s: float) -> str:
    gb = bytes_per_s / 1e9
    return f"{gb:.2f}" if gb >= 0.1 else f"{gb:.4f}"


def print_report(results: dict[str, dict[str, float]]) -> None:
    peers = list(results)
    print(f"\nnotebook_actors data figures, GB/s ({platform.python_version()}, {os.cpu_count()} CPUs)")
    print(f"{'':<24}" + "".join(f"{p:>16}" for p in peers) + f"{'vs memcpy':>11}{'vs Pipe':>9}")
    ours, floor, pipe = results.get("notebook_actors", {}), results.get("memcpy", {}), results.get("mp.Pipe", {})
    for row in ROWS:
        cells = "".join(f"{_gbps(results[p][row]):>16}" if row in results[p] else f"{'n/a':>16}" for p in peers)
        mine = ours.get(row)
        vs_floor = f"{mine / floor[row]:>11.2f}" if mine and row in floor else f"{'':>11}"
        vs_pipe = f"{mine / pipe[row]:>8.1f}x" if mine and row in pipe else f"{'':>9}"
        print(f"{row:<24}{cells}{vs_floor}{vs_pipe}")
    growth = ours.get("rss growth 256 MiB")
    if growth is not None:
        print(f"receiver peak RSS growth for a 256 MiB array: {growth:.2f}x the array")
    row = "one way 256 MiB"
    if row in ours and row in floor and row in pipe:
        a, b = ours[row] / floor[row], ours[row] / pipe[row]
        print(
            f"targets: 256 MiB one way >= 1/3 of memcpy: {a:.2f} ({'met' if a >= 1 / 3 else 'NOT met'}); "
            f">= 2x mp.Pipe: {b:.1f}x ({'met' if b >= 2 else 'NOT met'}); "
            f"RSS growth <= 1.1x: {growth:.2f} ({'met' if growth is not None and growth <= 1.1 else 'NOT met'})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--no-ipp", action="store_true", help="skip ipyparallel (its cluster takes seconds to start)")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    for name, run in PEERS.items():
        if name == "ipyparallel" and args.no_ipp:
            continue
        t0 = now()
        try:
            results[name] = run(args.quick)
        except Exception as exc:  # a peer that cannot run here is reported, not fatal
            print(f"{name}: skipped ({type(exc).__name__}: {exc})")
            continue
        print(f"{name}: {now() - t0:.1f} s", flush=True)
    print_report(results)


if __name__ == "__main__":
    main()
