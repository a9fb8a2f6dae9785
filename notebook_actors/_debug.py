"""The multi-process debugger (placeholder until the routed REPL lands)."""
from __future__ import annotations


async def post_mortem_for(exc: BaseException) -> None:
    return None
