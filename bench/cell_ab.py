"""``python -m bench.cell_ab [--cells N] REV``: the trivial ``%%actor`` cell, this
checkout against git revision ``REV`` (e.g. ``main``), in one run.

The kernel figure of :mod:`bench.peers.kernel` (``x = 1`` as execute_request →
execute_reply, jupyter_client, the actor already running), for two code trees at
once: one kernel runs this checkout, the other ``REV`` exported with ``git archive``
and laid out as an installed package (``notebook_actors`` with ``kernel_ext`` and
``widgets`` inside it) on its ``PYTHONPATH``, which its actors inherit. Each round
runs a local cell and an ``%%actor`` cell in both kernels, the order alternating, so
that the machine's noise hits both trees alike; prints the medians and the
``%%actor`` cell's cost over the local one per tree.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ._util import median
from .peers.kernel import CELL, REPO, Kernel


class _TreeKernel(Kernel):
    def __init__(self, pythonpath: str | None) -> None:
        from jupyter_client.manager import start_new_kernel

        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        # outside the checkout: its directory on sys.path would shadow the other tree
        self.km, self.kc = start_new_kernel(
            kernel_name="python3", startup_timeout=60, cwd=tempfile.gettempdir(), env=env
        )
        self.where = self.expr("__import__('notebook_actors').__file__")


def _export(rev: str, into: Path) -> Path:
    """``rev``'s tree as an installed package would lay it out; the sys.path entry."""
    tree = into / "tree"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    site = into / "site"
    shutil.copytree(tree / "notebook_actors", site / "notebook_actors")
    for wing in ("kernel_ext", "widgets"):
        shutil.copytree(tree / wing, site / "notebook_actors" / wing)
    return site


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cell_ab", description=__doc__.split("\n")[0])
    parser.add_argument("rev", help="the git revision to compare this checkout with (e.g. main)")
    parser.add_argument("--cells", type=int, default=300, help="cells of each kind per tree (default 300)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="na-cell-ab-") as tmp:
        trees = {args.rev: _TreeKernel(str(_export(args.rev, Path(tmp)))), "this checkout": _TreeKernel(None)}
        times: dict[str, dict[str, list[float]]] = {name: {"local": [], "actor": []} for name in trees}
        try:
            for kernel in trees.values():
                kernel.must("%load_ext notebook_actors", "%load_ext notebook_actors")
                for _ in range(20):  # the actor spawned, both paths warm
                    kernel.must(f"%%actor bench\n{CELL}", "%%actor")
                    kernel.must(CELL, "a local cell")
            for i in range(args.cells):
                order = list(trees.items()) if i % 2 == 0 else list(trees.items())[::-1]
                for name, kernel in order:
                    cells = [("local", CELL), ("actor", f"%%actor bench\n{CELL}")]
                    for kind, code in cells if (i // 2) % 2 == 0 else cells[::-1]:
                        times[name][kind].append(kernel.must(code, kind) * 1e3)
        finally:
            for kernel in trees.values():
                kernel.close()
    print(f"{args.cells} cells of each kind per tree, interleaved; load average {os.getloadavg()[0]:.2f}")
    for name, kernel in trees.items():
        local, actor = median(times[name]["local"]), median(times[name]["actor"])
        print(
            f"{name:>16}: local {local:.2f} ms, %%actor {actor:.2f} ms, over local {actor - local:+.2f} ms"
            f"  ({kernel.where})"
        )


if __name__ == "__main__":
    main()
