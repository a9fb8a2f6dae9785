"""Run one sample: ``python -m bench._worker PEER FIGURE [--quick]``, or list a
peer's figures (or why it cannot run) with ``--check``. The result is the last line
of stdout, a JSON object after ``RESULT_TAG``."""

from __future__ import annotations

import importlib
import json
import sys
import traceback

RESULT_TAG = "BENCH-RESULT "

#: peer name → (module, variant passed to ``make_figures``/``unavailable``, or None)
PEER_MODULES = {
    "floor": ("bench.peers.floor", None),
    "notebook_actors": ("bench.peers.na", "default"),
    "notebook_actors/subprocess": ("bench.peers.na", "trio"),
    "mp/spawn": ("bench.peers.mp", "spawn"),
    "mp/forkserver": ("bench.peers.mp", "forkserver"),
    "trio-parallel": ("bench.peers.tp", None),
    "ipyparallel": ("bench.peers.ipp", None),
    "tractor": ("bench.peers.tractor_peer", None),
    "kernel": ("bench.peers.kernel", None),
}


def load(peer: str) -> tuple[dict, str | None]:
    """The peer's figures, and why it cannot run (None when it can)."""
    mod_name, variant = PEER_MODULES[peer]
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as exc:
        return {}, f"does not import here: {exc}"
    args = () if variant is None else (variant,)
    why = mod.unavailable(*args) if hasattr(mod, "unavailable") else None
    figures = mod.make_figures(*args) if hasattr(mod, "make_figures") else mod.FIGURES
    return figures, why


def main(argv: list[str]) -> None:
    peer, what = argv[0], argv[1]
    quick = "--quick" in argv
    figures, why = load(peer)
    if what == "--check":
        out = {"unavailable": why, "figures": list(figures)}
    else:
        try:
            out = {"values": figures[what](quick)}
        except Exception as exc:
            traceback.print_exc()
            out = {"error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.flush()
    print("\n" + RESULT_TAG + json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
