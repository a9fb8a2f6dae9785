"""``python -m bench [--quick] [--rounds N] [--peers a,b] [--no-kernel] [--setup-tractor]``

Runs every figure for every peer, one fresh worker process per sample, in rounds
that interleave the peers (the order rotates each round), with a progress bar (which
peer and figure, rounds left); prints one table (figure × peer), the cost ratios
against the floor and against each peer, and the issue's targets; writes everything
as JSON to ``bench/results/``, with charts of the comparison (PNG, SVG) beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import _charts
from ._report import build_report, print_report, render_markdown
from ._worker import PEER_MODULES, RESULT_TAG

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
TRACTOR_VENV = RESULTS / "tractor-venv"
SAMPLE_TIMEOUT = 300.0
#: Rounds a slow peer's figure runs at most (each sample takes seconds).
ROUND_CAP = {
    ("ipyparallel", "spawn10"): 1,
    ("ipyparallel", "spawn1"): 3,
    ("ipyparallel", "rss"): 2,
    ("kernel", "px"): 2,
    ("kernel", "idle_cpu"): 2,
    ("kernel", "cells"): 3,
    ("kernel", "cells_trio"): 2,
    ("notebook_actors", "fanout"): 1,
}
#: Figures too slow for --quick.
QUICK_SKIP = {("ipyparallel", "spawn10")}


def interpreter_for(peer: str) -> str:
    if peer == "tractor" and TRACTOR_VENV.exists():
        return str(TRACTOR_VENV / "bin" / "python")
    return sys.executable


def set_subreaper() -> None:
    """Adopt orphaned grandchildren (actors start their own sessions), so that every
    process a sample leaves behind is found, reported and killed here."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER


def reap_leftovers(label: str, grace: float = 5.0) -> list[str]:
    """Wait (bounded) for adopted orphans to exit; kill and report the rest."""
    import psutil

    me = psutil.Process()
    deadline = time.monotonic() + grace
    while True:
        kids = [p for p in me.children(recursive=True) if _alive(p)]
        if not kids or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    left = []
    for p in kids:
        try:
            left.append(f"{p.pid} {' '.join(p.cmdline())[:100]}")
            p.kill()
        except psutil.NoSuchProcess:
            pass
    for p in me.children():
        try:
            os.waitpid(p.pid, os.WNOHANG)
        except ChildProcessError:
            pass
    if left:
        print(f"  ! {label} left {len(left)} process(es) behind (killed): {left}", file=sys.stderr)
    return left


def _alive(p) -> bool:
    import psutil

    try:
        if p.status() == psutil.STATUS_ZOMBIE:
            os.waitpid(p.pid, os.WNOHANG)
            return False
        return True
    except (psutil.NoSuchProcess, ChildProcessError):
        return False


def run_worker(peer: str, what: str, quick: bool) -> dict:
    cmd = [interpreter_for(peer), "-m", "bench._worker", peer, what] + (["--quick"] if quick else [])
    env = dict(os.environ, PYTHONWARNINGS="ignore", PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=SAMPLE_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return {"error": f"timed out after {SAMPLE_TIMEOUT:.0f} s"}
    finally:
        leaks = reap_leftovers(f"{peer} {what}")
    for line in reversed(out.splitlines()):
        if line.startswith(RESULT_TAG):
            result = json.loads(line[len(RESULT_TAG) :])
            if "error" in result:
                result["stderr"] = err[-2000:]
            if leaks:
                result["leaked"] = leaks
            return result
    return {"error": f"worker exited {proc.returncode} without a result", "stderr": err[-2000:]}


def setup_tractor() -> None:
    """tractor 0.1.0a5 declares a git URL dependency that pip refuses from PyPI; install
    it without dependencies into a side venv, with the trio it was written for."""
    import venv

    venv.create(TRACTOR_VENV, with_pip=True)
    pip = [str(TRACTOR_VENV / "bin" / "python"), "-m", "pip", "install", "-q"]
    deps = [
        "trio==0.22.2",
        "async_generator",
        "trio_typing",
        "tricycle",
        "colorlog",
        "wrapt",
        "msgspec",
        "pdbpp",
        "psutil",
    ]
    subprocess.run(pip + deps, check=True)
    subprocess.run([*pip, "--no-deps", "tractor==0.1.0a5"], check=True)
    print(f"tractor installed in {TRACTOR_VENV}")


def compile_bytecode() -> None:
    """Compile the package's bytecode, as installing a wheel does. An editable install
    compiles on first import, unless PYTHONDONTWRITEBYTECODE is set (it is on some CI
    machines, this one included): then every actor would compile ~4,000 lines of
    source on start, ~35 ms that no installed copy pays."""
    import compileall

    for sub in ("notebook_actors", "kernel_ext", "widgets", "bench"):
        path = REPO / sub
        if path.is_dir():
            compileall.compile_dir(str(path), quiet=1, rx=re.compile(r"results"))


def machine_facts() -> dict:
    import psutil

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load_avg_at_start": os.getloadavg(),
        "versions": _versions(),
    }


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("notebook_actors", "trio", "msgspec", "trio-parallel", "ipyparallel", "ipykernel"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    if TRACTOR_VENV.exists():
        out["tractor"] = "0.1.0a5 (side venv, trio 0.22.2)"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[1])
    ap.add_argument("--quick", action="store_true", help="one round of shorter samples (a minute or two)")
    ap.add_argument("--rounds", type=int, help="rounds (default 3, or 1 with --quick)")
    ap.add_argument("--peers", help=f"comma-separated subset of: {', '.join(PEER_MODULES)}")
    ap.add_argument("--no-kernel", action="store_true", help="skip the Jupyter kernel figures")
    ap.add_argument("--setup-tractor", action="store_true", help="install tractor into a side venv, then exit")
    ap.add_argument(
        "--markdown", metavar="JSON", help="print a saved report (e.g. bench/results/latest.json) as Markdown"
    )
    ap.add_argument("--charts", metavar="JSON", help="redraw the charts of a saved report (PNG and SVG beside it)")
    args = ap.parse_args()
    if args.setup_tractor:
        setup_tractor()
        return
    if args.markdown:
        print(render_markdown(json.loads(Path(args.markdown).read_text())))
        return
    if args.charts:
        path = Path(args.charts)
        for out in _charts.draw(json.loads(path.read_text()), path.with_suffix("")):
            print(out)
        return
    set_subreaper()
    compile_bytecode()
    rounds = args.rounds or (1 if args.quick else 3)
    peers = args.peers.split(",") if args.peers else list(PEER_MODULES)
    if args.no_kernel and "kernel" in peers:
        peers.remove("kernel")
    started = time.time()
    facts = machine_facts()
    plan, skipped = {}, {}
    for peer in peers:
        check = run_worker(peer, "--check", args.quick)
        why = check.get("unavailable") or check.get("error")
        if peer == "tractor" and why and not TRACTOR_VENV.exists():
            why += " (tractor 0.1.0a5 does not pip-install on Python 3.11; `python -m bench --setup-tractor` puts it in a side venv)"
        if why:
            skipped[peer] = why
            print(f"- {peer}: skipped: {why}", file=sys.stderr)
        else:
            plan[peer] = check["figures"]
    samples: dict[str, dict[str, list]] = {p: {} for p in plan}
    notes: dict[str, list[str]] = {}
    schedule = plan_rounds(plan, rounds, args.quick)
    with _progress() as progress:
        bar = progress.add_task("", total=len(schedule))
        for r, peer, fig in schedule:
            progress.update(bar, description=f"round {r + 1}/{rounds} · {peer} · {fig}")
            res = run_worker(peer, fig, args.quick)
            progress.advance(bar)
            if "error" in res:
                notes.setdefault(peer, []).append(f"{fig}: {res['error']}")
                progress.console.print(f"  ! {peer} {fig}: {res['error']}\n{res.get('stderr', '')[-800:]}")
                continue
            if res.get("leaked"):
                notes.setdefault(peer, []).append(f"{fig}: left processes behind: {res['leaked']}")
            for key, val in res["values"].items():
                if key == "pending":
                    if val not in notes.get(peer, []):
                        notes.setdefault(peer, []).append(val)
                else:
                    samples[peer].setdefault(key, []).extend(val)
    report = build_report(samples, skipped, notes, facts, rounds, args.quick, time.time() - started)
    print_report(report)
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    for name in (f"bench-{stamp}", "latest"):
        (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2))
        charts = _charts.draw(report, RESULTS / name)
    print(f"\nJSON: {RESULTS / f'bench-{stamp}.json'} (and latest.json)")
    if charts:
        print(f"charts: {', '.join(str(c) for c in charts)}")


def plan_rounds(plan: dict[str, list[str]], rounds: int, quick: bool) -> list[tuple[int, str, str]]:
    """Every sample to run, as (round, peer, figure), in order: the peers interleave,
    and their order rotates each round so that no peer always goes first."""
    out = []
    order = list(plan)
    for r in range(rounds):
        order = order[1:] + order[:1] if r else order
        for peer in order:
            for fig in plan[peer]:
                if r >= ROUND_CAP.get((peer, fig), rounds) or (quick and (peer, fig) in QUICK_SKIP):
                    continue
                out.append((r, peer, fig))
    return out


def _progress():
    """A progress bar on stderr: which sample runs, how many are left, time left."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )


if __name__ == "__main__":
    main()
