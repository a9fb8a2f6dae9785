"""What the live tree widget costs: a kernel runs 100 actors (the root, 9 mids with 10
leaves each), first without, then with the widget; we compare CPU time of
the kernel and of the whole tree, and count the update bytes the front end receives.

Run: python -m bench.tree_widget_cost   (about a minute; spawns 100 processes)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import psutil
import trio

import notebook_actors as na

REPO = Path(__file__).resolve().parents[1]
WINDOW = 10.0  # seconds per measurement


async def spawn_mid(leaves: int) -> None:
    """Start ``leaves`` idle leaf actors below this one; keep them until cancelled."""
    async with na.open_nursery() as n:
        for i in range(leaves):
            await n.start_actor(f"leaf-{i}")
        await trio.sleep_forever()


async def hundred(task_status=trio.TASK_STATUS_IGNORED) -> None:
    async with na.open_nursery() as n:
        async with trio.open_nursery() as tn:
            for m in range(9):
                p = await n.start_actor(f"mid-{m}", enable_modules=[__name__])
                tn.start_soon(lambda p=p: p.run(spawn_mid, leaves=10))
            task_status.started()
            await trio.sleep_forever()


SETUP = f"""
import asyncio, sys, time, psutil
sys.path.insert(0, {str(REPO)!r})
from bench import tree_widget_cost as b
from notebook_actors import to_asyncio
from notebook_actors.testing import private_registry_addr
ga = to_asyncio.start_guest_actor(registry_addrs=[private_registry_addr()])
await ga.wait_started()
await ga.run(lambda: ga._nursery.start(b.hundred))
def count():
    return 1 + len(psutil.Process().children(recursive=True))
while count() < 100:  # the kernel (root) and its 99 descendants
    await asyncio.sleep(0.2)
await asyncio.sleep(10)  # let start-up settle before measuring
print(count())
"""


def main() -> None:
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name="python3")
    km.start_kernel(cwd=str(REPO))
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    kernel = psutil.Process(km.provisioner.process.pid)
    update_bytes: list[int] = []

    def run(code: str) -> list[str]:
        msg_id = kc.execute(code)
        out: list[str] = []
        while True:
            msg = kc.get_iopub_msg(timeout=300)
            c = msg["content"]
            if msg["msg_type"] == "comm_msg" and c["data"].get("method") == "update":
                update_bytes.append(len(json.dumps(c["data"])))
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                out += c["text"].splitlines()
            if msg["msg_type"] == "error":
                raise RuntimeError("\n".join(c["traceback"]))
            if msg["msg_type"] == "status" and c["execution_state"] == "idle":
                return out

    def cpu(procs: list[psutil.Process]) -> float:
        total = 0.0
        for p in procs:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return total

    def measure(label: str) -> None:
        tree = [kernel, *kernel.children(recursive=True)]
        k0, t0, w0 = cpu([kernel]), cpu(tree), time.monotonic()
        n0 = len(update_bytes)
        run(f"await asyncio.sleep({WINDOW})")
        dt = time.monotonic() - w0
        k, t = cpu([kernel]) - k0, cpu(tree) - t0
        ups = update_bytes[n0:]
        print(
            f"{label}: kernel CPU {100 * k / dt:.1f}%  whole tree CPU {100 * t / dt:.1f}% "
            f"({len(tree)} processes)  updates {len(ups) / dt:.1f}/s, "
            f"{(sum(ups) / len(ups) / 1024) if ups else 0:.1f} KiB each"
        )

    try:
        print("actors:", run(SETUP)[-1])
        measure("no widget  ")
        run(
            "from notebook_actors.widgets import ActorTreeWidget\nw = ActorTreeWidget()\ndisplay(w)\n"
            "while len(w.tree.get('nodes', {})) < 100:\n    await asyncio.sleep(0.2)"
        )
        measure("with widget")
        print("widget statistics:", run("print(w.statistics())")[-1])
        run("w.close()")
        measure("closed     ")
        run("await ga.aclose()")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)


if __name__ == "__main__":
    main()
