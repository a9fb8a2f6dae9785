"""A breakpoint in an actor on another host: the REPL opens on this terminal.
Usage: remote_breakpoint.py REGISTRY HOST SSH_CONFIG"""

import sys

import trio

import notebook_actors as na


async def compute() -> int:
    answer = 6 * 7
    await na.breakpoint()
    return answer


async def main() -> None:
    far = na.SSHLauncher(sys.argv[2], ssh_config=sys.argv[3])
    async with na.open_nursery(debug_mode=True, registry_addrs=[sys.argv[1]]) as n:
        portal = await n.run_in_actor(compute, name="compute", host=far)
        print("result:", await portal.result())


if __name__ == "__main__":
    trio.run(main)
