"""JupyterLab's visual debugger panel inside an actor, in a real browser: JupyterLab on a
free local port, driven by Playwright with the system Chromium. `%actor debugger dbg`
sends the panel to actor dbg; a breakpoint set in the gutter of an `%%actor dbg` cell
stops the cell in the actor, the panel shows the call stack and the actor's variables,
continue finishes the cell. Screenshots go to tests/browser/output/ (git-ignored)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_tree_widget_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    accept_kernel_dialog,
    one_idle_kernel,
    quiet_settings,
)

OUTPUT = Path(__file__).parent / "output"

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is missing (apt-get install chromium)"
)

#: The cell the breakpoint goes in (line 4: ``total += i``).
LOOP_CELL = "%%actor dbg\ntotal = 0\nfor i in range(3):\n    total += i\nprint('total', total)"
CELLS = [
    "%load_ext notebook_actors\nimport logging, sys\n"
    "dap_log = logging.getLogger('notebook_actors.kernel.dap')  # every debug_request, to the server's log\n"
    "dap_log.addHandler(logging.StreamHandler(sys.__stderr__))\n"
    "dap_log.setLevel(logging.DEBUG)",
    "%%actor dbg\nimport os\nos.getpid()",
    "%actor debugger dbg",
    LOOP_CELL,
]


def write_notebook(path: Path) -> None:
    nb = {
        "cells": [
            {"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {}, "outputs": [], "source": s}
            for i, s in enumerate(CELLS)
        ],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(nb))


@pytest.fixture
def jupyterlab(tmp_path, jupyter_server):
    """A JupyterLab server on a free port, serving a notebook of :data:`CELLS`; the
    kernel logs every debug_request it proxies (tests/browser/output/debugger_panel.log)."""
    root = tmp_path / "nb"
    root.mkdir()
    write_notebook(root / "debug_panel.ipynb")
    quiet_settings(tmp_path / "settings")
    return jupyter_server("jupyterlab", root, log_name="debugger_panel")


def code_cell(page, index: int):
    return page.locator(".jp-Notebook .jp-CodeCell").nth(index)


def run_cell(page, index: int) -> None:
    """Select cell ``index``, Shift+Enter, and wait until it has run (its prompt has a number)."""
    from playwright.sync_api import expect

    cell = code_cell(page, index)
    cell.locator(".cm-content").click()
    page.keyboard.press("Shift+Enter")
    accept_kernel_dialog_if_any(page)
    expect(cell.locator(".jp-InputPrompt")).to_have_text("[" + str(index + 1) + "]:", timeout=120_000)


def toggle_breakpoint(page, gutter, line) -> None:
    """Click the breakpoint gutter beside ``line`` (where it is now)."""
    g, y = gutter.bounding_box(), line.bounding_box()
    assert g is not None and y is not None
    page.mouse.click(g["x"] + g["width"] / 2, y["y"] + y["height"] / 2)
    page.mouse.move(0, 0)  # no hover icon left in the gutter


def accept_kernel_dialog_if_any(page) -> None:
    if page.locator(".jp-Dialog").count():
        accept_kernel_dialog(page)


@pytest.mark.timeout(420)  # JupyterLab's first load is slow on a busy machine
def test_the_debugger_panel_stops_inside_an_actor(jupyterlab):
    """Test JupyterLab's debugger panel on actor dbg: after `%actor debugger dbg` and the
    panel's bug button, a gutter breakpoint in an `%%actor dbg` cell is listed, running
    the cell (Shift+Enter) stops it in the actor at that line (the cell waits, the call
    stack names the cell, the variables are the actor's: total and i are 0), and
    continue (with the breakpoint removed) lets the cell print its result."""
    from playwright.sync_api import expect, sync_playwright

    base, token = jupyterlab
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = None
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{base}/lab/tree/debug_panel.ipynb?token={token}")
            expect(page.locator(".jp-Notebook")).to_be_visible(timeout=90_000)
            expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(1, timeout=90_000)
            one_idle_kernel(base, token)
            for index in range(3):
                run_cell(page, index)
            expect(code_cell(page, 2).locator(".jp-OutputArea")).to_contain_text("now debugs actor dbg")

            # The bug button: the panel opens on the actor's session.
            bug = page.locator(".jp-DebuggerBugButton")
            expect(bug).to_be_enabled(timeout=60_000)
            bug.click()
            expect(bug).to_have_attribute("aria-pressed", "true", timeout=30_000)
            expect(page.locator(".jp-DebuggerSidebar")).to_be_visible(timeout=30_000)

            # A breakpoint in the gutter at line 4 (`total += i`) of the loop cell.
            cell = code_cell(page, 3)
            gutter = cell.locator("div.cm-breakpoint-gutter")
            expect(gutter).to_be_visible(timeout=30_000)
            line = cell.locator(".cm-line").nth(3)
            expect(line).to_have_text("    total += i")
            toggle_breakpoint(page, gutter, line)
            expect(cell.locator(".cm-breakpoint-icon")).to_have_count(1, timeout=30_000)
            expect(page.locator(".jp-DebuggerBreakpoint")).to_have_count(1, timeout=30_000)
            expect(page.locator(".jp-DebuggerBreakpoint-line")).to_have_text("4")

            # Shift+Enter: the cell stops in the actor at line 4.
            cell.locator(".cm-content").click()
            page.keyboard.press("Shift+Enter")
            frames = page.locator(".jp-DebuggerCallstackFrame")
            expect(frames.first).to_be_visible(timeout=60_000)
            expect(frames.first.locator(".jp-DebuggerCallstackFrame-location")).to_contain_text(":4", timeout=30_000)
            expect(cell.locator(".jp-InputPrompt")).to_contain_text("*")
            # the cell is the stack's only frame: the runtime's frames are not the user's code
            expect(frames).to_have_count(1)
            expect(frames.first.locator(".jp-DebuggerCallstackFrame-name")).to_have_text("<module>")
            expect(cell.locator(".jp-DebuggerEditor-highlight")).to_have_count(1, timeout=30_000)
            variables = page.locator(".jp-DebuggerVariables-body:not(.lm-mod-hidden)")
            expect(variables).to_contain_text("total", timeout=30_000)
            names = variables.locator(".jp-DebuggerVariables-name")
            expect(names.filter(has_text="total")).not_to_have_count(0)
            expect(names.filter(has_text="i")).not_to_have_count(0)
            assert "total 3" not in (cell.locator(".jp-OutputArea").text_content() or "")
            page.screenshot(path=str(OUTPUT / "debugger_panel_stopped.png"))

            # Remove the breakpoint and continue: the cell ends with the actor's result.
            toggle_breakpoint(page, gutter, line)
            expect(page.locator(".jp-DebuggerBreakpoint")).to_have_count(0, timeout=30_000)
            page.locator("[data-command='debugger:continue']").first.click()
            expect(cell.locator(".jp-OutputArea")).to_contain_text("total 3", timeout=60_000)
            expect(cell.locator(".jp-InputPrompt")).to_have_text("[4]:", timeout=60_000)
            expect(frames).to_have_count(0, timeout=30_000)
            page.screenshot(path=str(OUTPUT / "debugger_panel_continued.png"))
        except BaseException:
            if page is not None:  # what the browser showed when it failed
                page.screenshot(path=str(OUTPUT / "debugger_panel_failure.png"))
            raise
        finally:
            browser.close()
