"""The IPython extension of notebook_actors (``%load_ext notebook_actors``).

Loading it runs this kernel's root actor as a trio guest on the kernel's asyncio loop
and adds the ``%%actor`` cell magic and the ``%actor`` line magic. See
``docs/notebook.md``.

The modules, kernel side: ``_extension`` (load/unload), ``_session`` (the one state
object, the input transformer and the trio hand-off), ``_magics`` (``%%actor``),
``_commands`` (the ``%actor`` subcommands), ``_actors`` (the notebook's actors),
``_output_server`` and ``_stdin`` (a cell's output and prompts), ``_line`` (a cell on
its actor's cell line, from asyncio), ``_outcomes`` (how a cell ends), ``_guest`` (the trio guest run), ``_debugger`` (the REPL front end).
Actor side: ``_cell_runtime`` (running cells), ``_cell_output`` (the output thread),
``_cell_display`` and ``_mpl_inline`` (rich display). Both: ``_protocol`` (the typed
messages) and ``_held`` (an actor held in its own nursery). The core is used only
through its public API and the names its modules export in ``__all__``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_ipython_extension", "unload_ipython_extension"]


def load_ipython_extension(ipython: Any) -> None:
    """Start the actor runtime in this kernel and register ``%%actor``/``%actor``."""
    from ._extension import load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """Detach the magics and start stopping the actor tree.

    ``%unload_ext notebook_actors`` typed in a cell also waits until every actor
    process is gone.
    """
    from ._extension import unload_sync

    unload_sync(ipython)
