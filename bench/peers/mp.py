"""The stdlib: multiprocessing ``spawn`` and ``forkserver`` (Process + Pipe).

The forkserver is warmed (one throwaway process) before timing: like our fork
server it starts once per program.
"""

from __future__ import annotations

import multiprocessing as mp

from .. import _fns
from .._util import RPC_N, SPAWN_REPS, STREAM_N, now, round_trip_summary, rss_of


def make_figures(method: str) -> dict:
    def ctx():
        c = mp.get_context(method)
        if method == "forkserver":
            c.set_forkserver_preload(["bench._fns"])
            p = c.Process(target=_fns.trivial)
            p.start()
            p.join()
        return c

    def first_results(c, count: int) -> float:
        t0 = now()
        procs, conns = [], []
        for i in range(count):
            recv, send = c.Pipe(duplex=False)
            p = c.Process(target=_fns.mp_result, args=(send, i))
            p.start()
            send.close()
            procs.append(p)
            conns.append(recv)
        for i, conn in enumerate(conns):
            assert conn.recv() == i + 1
        elapsed = now() - t0
        for p in procs:
            p.join()
        return elapsed

    def spawn1(quick: bool) -> dict:
        c = ctx()
        return {"spawn1_ms": [first_results(c, 1) * 1e3 for _ in range(SPAWN_REPS[quick])]}

    def spawn10(quick: bool) -> dict:
        return {"spawn10_ms": [first_results(ctx(), 10) * 1e3]}

    def with_server(body):
        c = ctx()
        parent, child = c.Pipe()
        p = c.Process(target=_fns.mp_serve, args=(child,))
        p.start()
        child.close()
        try:
            return body(parent, p)
        finally:
            parent.send(None)
            p.join(5)
            if p.exitcode is None:
                p.kill()
                p.join()

    def round_trips(quick: bool, prefix: str) -> dict:
        def body(conn, proc):
            times = []
            for i in range(RPC_N[quick] + 50):
                t0 = now()
                conn.send(i)
                assert conn.recv() == i
                times.append(now() - t0)
            return times[50:]

        return round_trip_summary(with_server(body), prefix)

    def stream(quick: bool) -> dict:
        n = STREAM_N[quick]

        def body(conn, proc):
            conn.send(("stream", n))
            t0 = now()
            recv = conn.recv
            for _ in range(n):
                recv()
            return n / (now() - t0)

        return {"stream_msgs_s": [with_server(body)]}

    def rss(quick: bool) -> dict:
        def body(conn, proc):
            conn.send(0)
            conn.recv()
            import time

            time.sleep(0.3)  # settle after start-up (not a measurement)
            return rss_of(proc.pid)

        return with_server(body)

    return {
        "spawn1": spawn1,
        "spawn10": spawn10,
        "rpc": lambda q: round_trips(q, "rpc"),
        "stream": stream,
        "echo": lambda q: round_trips(q, "echo"),
        "rss": rss,
    }
