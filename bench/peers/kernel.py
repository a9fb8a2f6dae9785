"""In a real Jupyter kernel (jupyter_client): the latency of a trivial cell, run
locally, in an actor with ``%%actor``, and on one ipyparallel engine with ``%%px``;
and the kernel's idle CPU with the extension loaded and 10 idle actors.

Latency is execute_request sent → execute_reply received, as a frontend sees it.
"""

from __future__ import annotations

import os
import time
import uuid

from .._util import median, now

CELL = "x = 1"
REPEATS = {False: 200, True: 50}
IDLE_WINDOW_S = {False: 5.0, True: 3.0}
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Pending(Exception):
    """The kernel extension cannot run this figure yet."""


def unavailable() -> str | None:
    try:
        import ipykernel  # noqa: F401
        import jupyter_client  # noqa: F401
    except ImportError as exc:
        return f"not installed ({exc}); pip install -e '.[test]'"
    return None


class Kernel:
    def __init__(self) -> None:
        from jupyter_client.manager import start_new_kernel

        self.km, self.kc = start_new_kernel(kernel_name="python3", startup_timeout=60, cwd=REPO)
        self.pid = int(self.expr("__import__('os').getpid()"))

    def execute(self, code: str, timeout: float = 120) -> tuple[float, dict]:
        """Run ``code``; return (seconds from request to reply, reply content)."""
        t0 = now()
        msg_id = self.kc.execute(code, store_history=False)
        while True:
            reply = self.kc.get_shell_msg(timeout=timeout)
            if reply["parent_header"].get("msg_id") == msg_id:
                elapsed = now() - t0
                break
        self._drain_iopub()
        return elapsed, reply["content"]

    def must(self, code: str, what: str) -> float:
        elapsed, content = self.execute(code)
        if content["status"] != "ok":
            raise Pending(f"{what} failed: {content.get('ename')}: {content.get('evalue')}")
        return elapsed

    def expr(self, expression: str) -> str:
        msg_id = self.kc.execute("", user_expressions={"v": expression}, store_history=False)
        while True:
            reply = self.kc.get_shell_msg(timeout=60)
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        value = reply["content"]["user_expressions"]["v"]
        return value["data"]["text/plain"]

    def _drain_iopub(self) -> None:
        while True:
            try:
                self.kc.get_iopub_msg(timeout=0)
            except Exception:
                return

    def close(self) -> None:
        try:
            self.kc.stop_channels()
        finally:
            self.km.shutdown_kernel(now=False)


def _timed(kernel: Kernel, code: str, n: int, what: str) -> list[float]:
    return [kernel.must(code, what) * 1e3 for _ in range(n)]


NEW_ACTORS = 3


def _cells(quick: bool, start_method: str | None) -> dict:
    """A trivial cell locally and in an actor, interleaved in one kernel; and cells
    that each start a new actor (what a user feels first)."""
    k = Kernel()
    suffix = "" if start_method is None else f"_{start_method}"
    try:
        try:
            if start_method is not None:
                k.must(
                    f"import notebook_actors; notebook_actors.try_set_start_method({start_method!r})",
                    "select start method",
                )
            k.must("%load_ext notebook_actors", "%load_ext notebook_actors")
            k.must(f"%%actor bench\n{CELL}", "%%actor (the first cell, which spawns the actor)")
        except Pending as exc:
            local = _timed(k, CELL, REPEATS[quick], "a local cell")
            return {"cell_local_ms": [median(local)], "pending": str(exc)}  # type: ignore[dict-item]
        new = [k.must(f"%%actor fresh{i}\n{CELL}", "%%actor in a new actor") * 1e3 for i in range(NEW_ACTORS)]
        nested = [
            k.must(f"%%actor nest{i}/child\n{CELL}", "%%actor in a new child of a new actor") * 1e3
            for i in range(NEW_ACTORS)
        ]
        out = {f"cell_new_actor{suffix}_ms": [median(new)], f"cell_new_nested{suffix}_ms": [median(nested)]}
        if start_method is None:
            local, actor = [], []
            for _ in range(REPEATS[quick]):
                local.append(k.must(CELL, "a local cell") * 1e3)
                actor.append(k.must(f"%%actor bench\n{CELL}", "%%actor") * 1e3)
            out.update(
                {
                    "cell_local_ms": [median(local)],
                    "cell_actor_ms": [median(actor)],
                    "cell_actor_overhead_ms": [median(actor) - median(local)],
                }
            )
        return out
    finally:
        k.close()


def cells(quick: bool) -> dict:
    return _cells(quick, None)


def cells_trio(quick: bool) -> dict:
    """New-actor cells with the subprocess backend selected in the kernel."""
    return _cells(quick, "trio")


def px(quick: bool) -> dict:
    """The same cell on one ipyparallel engine with ``%%px`` (cluster started first)."""
    k = Kernel()
    try:
        k.must(
            "import ipyparallel as ipp\n"
            f"_bench_cluster = ipp.Cluster(n=1, cluster_id='na-bench-{uuid.uuid4().hex[:8]}', log_level=40)\n"
            "_bench_rc = _bench_cluster.start_and_connect_sync()\n"
            "_bench_rc.wait_for_engines(1, timeout=120)\n"
            "_bench_rc.activate()",
            "starting an ipyparallel cluster in the kernel",
        )
        try:
            k.must(f"%%px\n{CELL}", "%%px")
            times = _timed(k, f"%%px\n{CELL}", REPEATS[quick] // 2, "%%px")
        finally:
            k.execute("_bench_rc.close(); _bench_cluster.stop_cluster_sync()")
        return {"cell_px_ms": [median(times)]}
    finally:
        k.close()


def idle_cpu(quick: bool) -> dict:
    """Kernel CPU while idle, with the extension loaded and 10 idle actors."""
    import psutil

    k = Kernel()
    try:
        k.must("%load_ext notebook_actors", "%load_ext notebook_actors")
        for i in range(10):
            k.must(f"%%actor idle{i}\n{CELL}", "%%actor")
        proc = psutil.Process(k.pid)
        time.sleep(1.0)  # let start-up work finish before the window opens
        window = IDLE_WINDOW_S[quick]
        c0 = proc.cpu_times()
        kids = {p.pid: p for p in proc.children(recursive=True)}
        k0 = sum(_cpu(p) for p in kids.values())
        time.sleep(window)
        c1 = proc.cpu_times()
        k1 = sum(_cpu(p) for p in kids.values())
        busy = (c1.user + c1.system) - (c0.user + c0.system)
        return {
            "kernel_idle_cpu_pct": [100 * busy / window],
            "actors_idle_cpu_pct": [100 * (k1 - k0) / window],
        }
    except Pending as exc:
        return {"pending": str(exc)}  # type: ignore[dict-item]
    finally:
        k.close()


def _cpu(p) -> float:
    try:
        t = p.cpu_times()
        return t.user + t.system
    except Exception:
        return 0.0


FIGURES = {"cells": cells, "cells_trio": cells_trio, "px": px, "idle_cpu": idle_cpu}
