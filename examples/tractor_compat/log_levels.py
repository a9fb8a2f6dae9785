"""A tractor script, unchanged but for its import: tractor's log levels.

    python examples/tractor_compat/log_levels.py

``loglevel=`` takes tractor's own levels in any case ('runtime', 'CANCEL',
'transport', 'pdb', 'devx'), and each logger has a method per level.
"""

import logging

import trio

import notebook_actors as tractor

LEVELS = ("transport", "runtime", "cancel", "info", "pdb", "devx")


def shown_levels() -> list:
    """The levels this actor's loggers show, lowest first."""
    log = tractor.log.get_logger("worker")
    log.cancel("the worker logs at the cancel level")
    return [name for name in LEVELS if log.isEnabledFor(logging.getLevelName(name.upper()))]


async def main() -> None:
    async with tractor.open_nursery(loglevel="RUNTIME") as nursery:
        print("root shows:", ", ".join(shown_levels()))
        portal = await nursery.start_actor("worker", enable_modules=[__name__], loglevel="cancel")
        print("worker shows:", ", ".join(await portal.run(shown_levels)))
        await portal.cancel_actor()
    tractor.log.get_console_log("devx")
    print("after get_console_log('devx'):", ", ".join(shown_levels()))


if __name__ == "__main__":
    trio.run(main)
