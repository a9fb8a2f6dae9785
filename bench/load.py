"""``python -m bench.load [--quick] [--start-method trio|forkserver]``

Load figures for notebook_actors (issue 11): 100 actors alive at once in one tree,
1,000 concurrent RPCs to one actor, 1,000,000 messages through one stream to a slow
consumer (producer memory must stay flat), 50 concurrent contexts between two
actors. Prints one table: wall time and the peak RSS of the whole tree, plus each
scenario's own figures. Figures, not pass/fail: the correctness versions of these
run in ``tests/reliability/test_load.py``.
"""

from __future__ import annotations

import argparse
import platform

import notebook_actors as na
from notebook_actors import testing
from notebook_actors.testing import _load

FULL = {"actors": 100, "rpcs": 1000, "messages": 1_000_000, "contexts": 50}
QUICK = {"actors": 20, "rpcs": 200, "messages": 50_000, "contexts": 10}


async def _all(sizes: dict[str, int]) -> list[_load.Figures]:
    return [
        await _load.many_actors(sizes["actors"], batch=10),
        await _load.concurrent_rpcs(sizes["rpcs"]),
        await _load.slow_consumer(sizes["messages"]),
        await _load.concurrent_contexts(sizes["contexts"]),
    ]


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    return str(value)


def print_table(results: list[_load.Figures], start_method: str) -> None:
    print(
        f"notebook_actors load figures ({platform.python_version()}, {start_method}, "
        f"{platform.machine()}, {__import__('os').cpu_count()} CPUs)"
    )
    print(f"{'scenario':<44} {'time s':>8} {'peak RSS MB':>12}  details")
    for f in results:
        details = ", ".join(f"{k}={_fmt(v)}" for k, v in f.notes.items())
        print(f"{f.name:<44} {f.seconds:>8.2f} {f.peak_rss_mb:>12.0f}  {details}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds, not minutes)")
    parser.add_argument("--start-method", default="trio", choices=["trio", "forkserver", "mp_spawn", "mp_forkserver"])
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    results = na.run(_all, sizes, registry_addrs=[testing.private_registry_addr()], start_method=args.start_method)
    print_table(results, args.start_method)


if __name__ == "__main__":
    main()
