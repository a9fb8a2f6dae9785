"""The IPython extension of notebook_actors (``%load_ext notebook_actors``).

Loading it runs this kernel's root actor as a trio guest on the kernel's asyncio loop
and adds the ``%%actor`` cell magic and the ``%actor`` line magic. See
``docs/notebook.md``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_ipython_extension", "unload_ipython_extension"]


def load_ipython_extension(ipython: Any) -> None:
    """Start the actor runtime in this kernel and register ``%%actor``/``%actor``."""
    from ._magics import load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """Detach the magics and start stopping the actor tree.

    ``%unload_ext notebook_actors`` typed in a cell also waits until every actor
    process is gone.
    """
    from ._magics import unload_sync

    unload_sync(ipython)
