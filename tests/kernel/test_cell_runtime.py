"""The actor side of %%actor cells, driven from a plain trio program (no kernel)."""

from __future__ import annotations

import os
import sys
import tempfile
import uuid

import trio

import notebook_actors as na
from notebook_actors.kernel_ext import _cell_runtime as cr
from notebook_actors.kernel_ext._output_server import CellWriter, OutputServer
from notebook_actors.kernel_ext._protocol import CellInterrupted, CellOk, Display, Stream, decode_done


async def run_cell(cells, code: str) -> tuple[list, object]:
    portal, server = cells
    events: list = []
    output = server.expect(CellWriter(sink=events.append), None)
    done = decode_done(await portal.run(cr.run_cell, code=code, label="unit", count=1, output=output.address))
    if done.output:
        await output.done.wait()
    output.close()
    return events, done.outcome


def text_of(events: list) -> str:
    return "".join(e.text for e in events if isinstance(e, Stream))


def in_cell_actor(test):
    """Run ``test((portal, server))`` against a fresh actor serving notebook cells."""

    async def main() -> None:
        registry = os.path.join(tempfile.gettempdir(), f"na-test-registry-{uuid.uuid4().hex[:8]}.sock")
        with trio.fail_after(60):
            async with na.open_nursery(registry_addrs=[registry]) as n, trio.open_nursery() as services:
                server = OutputServer()
                await services.start(server.serve)
                portal = await n.start_actor("cells", enable_modules=[cr.__name__])
                try:
                    await test((portal, server))
                finally:
                    await portal.cancel_actor()
                    services.cancel_scope.cancel()

    trio.run(main)


def test_importing_the_cell_runtime_does_not_import_ipython():
    """Test that the module actors import stays free of IPython."""
    code = "import sys, notebook_actors.kernel_ext._cell_runtime; print('IPython' in sys.modules)"
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_last_expression_value_and_namespace():
    """Test that the last expression comes back as a mime bundle and names persist."""

    async def check(cells):
        _, first = await run_cell(cells, "x = 20\nx + 1")
        assert first == CellOk(data={"text/plain": "21"}, metadata={}, value=first.value)
        _, second = await run_cell(cells, "x * 2")
        assert second.data["text/plain"] == "40"
        _, none = await run_cell(cells, "y = None\ny")
        assert none.data is None

    in_cell_actor(check)


def test_output_written_between_cells_is_labelled_in_the_next_one():
    """Test that output from a task outliving its cell, written while no cell runs,
    shows up labelled at the top of the next cell."""

    async def check(cells):
        portal, _ = cells
        code = (
            "printed = False\n"
            "started = trio.Event()\n"
            "async def later():\n    global printed\n    await started.wait()\n    print('late line')\n"
            "    printed = True\n"
            "trio.lowlevel.spawn_system_task(later)\n"
        )
        await run_cell(cells, code)
        await run_cell(cells, "started.set()")
        while not (await portal.run(cr.pull, names=["printed"]))["printed"]:
            await trio.sleep(0.01)  # polled by a plain call: no cell runs meanwhile
        events, _ = await run_cell(cells, "1")
        text = text_of(events)
        assert "background output of actor unit" in text and "late line" in text

    in_cell_actor(check)


def test_functions_defined_in_cells_are_shipped_by_value():
    """Test that the cell namespace is not importable, so its functions travel by value."""

    async def check(cells):
        code = (
            "from notebook_actors._portal import func_ref\n"
            "def f():\n    return 1\n"
            "ref = func_ref(f)\n"
            "(__name__, ref[0], ref[2] is not None)"
        )
        _, outcome = await run_cell(cells, code)
        assert outcome.data["text/plain"] == "('__actor_main__', '__actor_main__', True)"

    in_cell_actor(check)


def test_display_sends_mime_bundles():
    """Test that display() in a cell emits rich bundles, raw ones as given."""

    async def check(cells):
        code = (
            "class Page:\n    def _repr_html_(self):\n        return '<p>page</p>'\n"
            "display(Page())\n"
            "display({'text/plain': 'raw'}, raw=True)\n"
        )
        events, outcome = await run_cell(cells, code)
        assert isinstance(outcome, CellOk)
        displays = [e for e in events if isinstance(e, Display)]
        assert displays[0].data["text/html"] == "<p>page</p>"
        assert displays[1].data == {"text/plain": "raw"}

    in_cell_actor(check)


def test_a_cell_that_shows_nothing_opens_no_output_connection():
    """Test that a quiet cell's one answer says it has no output (the kernel waits for
    no end marker), and a printing cell's says it has."""

    async def test(cells):
        portal, server = cells
        for code, shown in (("x = 1", False), ("print('hi')", True)):
            output = server.expect(CellWriter(sink=[].append), None)
            done = decode_done(await portal.run(cr.run_cell, code=code, label="unit", count=1, output=output.address))
            assert isinstance(done.outcome, CellOk) and done.output is shown
            if shown:
                await output.done.wait()
            output.close()

    in_cell_actor(test)


def test_plain_cells_are_answered_in_the_call_and_awaiting_cells_in_a_task():
    """Test that a cell of plain code runs right in the actor's handling of the call
    (no task of its own: every plain cell sees the same trio task), while a cell that
    awaits gets a task of its own each time."""

    async def check(cells):
        probe = "seen.append(trio.lowlevel.current_task())"  # held: no id is reused
        await run_cell(cells, "seen = []")
        for code in (probe, probe, f"await trio.sleep(0)\n{probe}", f"await trio.sleep(0)\n{probe}"):
            await run_cell(cells, code)
        _, outcome = await run_cell(cells, "[seen.index(t) for t in seen]")
        assert outcome.data["text/plain"] == "[0, 0, 2, 3]"

    in_cell_actor(check)


def test_what_a_cell_sets_in_contextvars_stays_in_that_cell():
    """Test that a cell's contextvars (decimal's context here) do not leak into the
    next cell, plain or awaiting, as when each cell ran in a task of its own."""

    async def check(cells):
        for setter in ("decimal.getcontext().prec = 5", "await trio.sleep(0)\ndecimal.getcontext().prec = 5"):
            _, outcome = await run_cell(cells, f"import decimal\n{setter}")
            assert isinstance(outcome, CellOk)
            _, outcome = await run_cell(cells, "decimal.getcontext().prec")
            assert outcome.data["text/plain"] == "28"

    in_cell_actor(check)


def test_a_cell_interrupted_before_it_starts_does_not_run():
    """Test that an interrupt that reaches the actor before its cell does (the two
    calls race) makes the cell end interrupted without running its code."""

    async def check(cells):
        portal, server = cells
        for code in ("ran = True", "await trio.sleep(0)\nran = True"):
            await run_cell(cells, "ran = False")
            output = server.expect(CellWriter(sink=[].append), None)
            assert await portal.run(cr.interrupt_cell, cell=output.address[1]) is False
            done = decode_done(await portal.run(cr.run_cell, code=code, label="unit", count=1, output=output.address))
            output.close()
            assert isinstance(done.outcome, CellInterrupted)
            assert (await portal.run(cr.pull, names=["ran"]))["ran"] is False

    in_cell_actor(check)
