"""The actor side of %%actor cells, driven from a plain trio program (no kernel)."""

from __future__ import annotations

import os
import sys
import tempfile
import uuid

import trio

import notebook_actors as na
from notebook_actors.kernel_ext import _cell_runtime as cr


async def run_cell(portal: na.Portal, code: str) -> tuple[list[list], dict]:
    events: list[list] = []
    async with portal.open_context(cr.run_cell, code=code, label="unit") as (ctx, _pid):
        async with ctx.open_stream() as stream:
            async for event in stream:
                events.append(event)
        outcome = await ctx.result()
    return events, outcome


def in_cell_actor(test):
    """Run ``test(portal)`` against a fresh actor serving notebook cells."""

    async def main() -> None:
        registry = os.path.join(tempfile.gettempdir(), f"na-test-registry-{uuid.uuid4().hex[:8]}.sock")
        with trio.fail_after(60):
            async with na.open_nursery(registry_addrs=[registry]) as n:
                portal = await n.start_actor("cells", enable_modules=[cr.__name__])
                try:
                    await test(portal)
                finally:
                    await portal.cancel_actor()

    trio.run(main)


def test_importing_the_cell_runtime_does_not_import_ipython():
    """Test that the module actors import stays free of IPython."""
    code = "import sys, notebook_actors.kernel_ext._cell_runtime; print('IPython' in sys.modules)"
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_last_expression_value_and_namespace():
    """Test that the last expression comes back as a mime bundle and names persist."""

    async def check(portal):
        _, first = await run_cell(portal, "x = 20\nx + 1")
        assert first == {"status": "ok", "data": {"text/plain": "21"}, "metadata": {}}
        _, second = await run_cell(portal, "x * 2")
        assert second["data"]["text/plain"] == "40"
        _, none = await run_cell(portal, "y = None\ny")
        assert none["data"] is None

    in_cell_actor(check)


def test_output_written_after_the_cell_is_labelled_in_the_next_one():
    """Test that output from a task outliving its cell shows up, labelled, in the next cell."""

    async def check(portal):
        code = (
            "import trio, notebook_actors as na\n"
            "done = trio.Event()\n"
            "async def later():\n    await started.wait()\n    print('late line')\n    done.set()\n"
            "started = trio.Event()\n"
            "na.current_actor()._rpc_n.start_soon(later)\n"
        )
        await run_cell(portal, code)
        await run_cell(portal, "started.set()\nawait done.wait()")  # the print happens in this cell's time...
        events, _ = await run_cell(portal, "1")  # ...but belongs to no running cell: labelled here
        text = "".join(e[1] for e in events if e[0] in ("stdout", "stderr"))
        assert "background output of actor unit" in text and "late line" in text

    in_cell_actor(check)


def test_functions_defined_in_cells_are_shipped_by_value():
    """Test that the cell namespace is not importable, so its functions travel by value."""

    async def check(portal):
        code = (
            "from notebook_actors._portal import func_ref\n"
            "def f():\n    return 1\n"
            "ref = func_ref(f)\n"
            "(__name__, ref[0], ref[2] is not None)"
        )
        _, outcome = await run_cell(portal, code)
        assert outcome["data"]["text/plain"] == "('__actor_main__', '__actor_main__', True)"

    in_cell_actor(check)


def test_display_sends_mime_bundles():
    """Test that display() in a cell emits rich bundles, raw ones as given."""

    async def check(portal):
        code = (
            "class Page:\n    def _repr_html_(self):\n        return '<p>page</p>'\n"
            "display(Page())\n"
            "display({'text/plain': 'raw'}, raw=True)\n"
        )
        events, outcome = await run_cell(portal, code)
        assert outcome["status"] == "ok"
        displays = [e for e in events if e[0] == "display"]
        assert displays[0][1]["text/html"] == "<p>page</p>"
        assert displays[1][1] == {"text/plain": "raw"}

    in_cell_actor(check)
