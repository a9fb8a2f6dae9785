"""The notebook in Notebook 7 (not only JupyterLab): `jupyter notebook` started on a free
local port, driven by Playwright with the system Chromium. A notebook loads the
extension, runs an ``%%actor`` cell whose output arrives while it still runs, shows the
tree widget (light and dark), and opens pdb++ on a crash in a ``--debug`` actor.
Screenshots go to tests/browser/output/ (git-ignored)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_tree_widget_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    change_theme,
    clipped,
    luminance,
    row,
    run_all_cells,
)

OUTPUT = Path(__file__).parent / "output"

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is missing (apt-get install chromium)"
)


def cells(go: Path) -> list[str]:
    """The notebook's cells: the live cell prints until the test creates ``go``."""
    return [
        "%load_ext notebook_actors",
        "%actor tree",
        "%%actor worker\nimport os, time\n"
        "i = 0\n"
        f"while not os.path.exists({str(go)!r}):\n"
        "    print('tick', i, flush=True)\n"
        "    i += 1\n"
        "    time.sleep(0.2)\n"
        "print('worker done')",
        "%%actor crasher --debug\ndef divide(a, b):\n    return a / b\n\ndivide(1, 0)",
    ]


def write_notebook(path: Path, sources: list[str]) -> None:
    nb = {
        "cells": [
            {"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {}, "outputs": [], "source": s}
            for i, s in enumerate(sources)
        ],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(nb))


@pytest.fixture
def notebook7(tmp_path, jupyter_server):
    """A Notebook 7 server on a free port, serving a notebook of :func:`cells`."""
    root = tmp_path / "nb"
    root.mkdir()
    go = tmp_path / "go"
    write_notebook(root / "nb7.ipynb", cells(go))
    return (*jupyter_server("notebook", root), go)


def code_cell(page, index: int):
    return page.locator(".jp-Notebook .jp-CodeCell").nth(index)


@pytest.mark.timeout(420)  # the first load is slow on a busy machine
def test_actor_cells_widget_and_debugger_in_notebook7(notebook7):
    """Test the notebook in Notebook 7: `%load_ext`, an `%%actor` cell whose output shows
    while the cell still runs, the tree widget with headers and state words in both
    themes, and a crash in a --debug actor opening pdb++ at the stdin prompt, `c` ending
    the cell with the user's error."""
    from playwright.sync_api import expect, sync_playwright

    base, token, go = notebook7
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = None
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            page.goto(f"{base}/notebooks/nb7.ipynb?token={token}")
            expect(page.locator(".jp-Notebook")).to_be_visible(timeout=90_000)
            assert page.evaluate("() => document.body.dataset.notebook") == "notebooks"  # Notebook 7's page
            run_all_cells(page, base, token)

            # Live output: ticks show while the cell is still running ([*]).
            live = code_cell(page, 2)
            expect(live.locator(".jp-OutputArea-output", has_text="tick 2")).to_have_count(1, timeout=120_000)
            expect(live.locator(".jp-InputPrompt")).to_contain_text("*")

            # The widget: an aligned grid with headers, worker running its cell.
            expect(page.locator(".na-head")).to_be_visible()
            worker = row(page, "worker")
            expect(worker).to_have_attribute("data-state", "running", timeout=60_000)
            expect(worker.locator("> .na-line .na-pill")).to_have_text("running")
            assert clipped(page) == []
            tree = page.locator(".na-tree")
            tree.screenshot(path=str(OUTPUT / "notebook7_tree_light.png"))

            go.touch()
            expect(live.locator(".jp-OutputArea-output", has_text="worker done")).to_have_count(1, timeout=60_000)
            expect(worker).to_have_attribute("data-state", "idle", timeout=30_000)

            # The crash opens pdb++ in the cell, at the frame that raised.
            crash = code_cell(page, 3)
            stdin = crash.locator(".jp-Stdin-input")
            expect(stdin).to_be_visible(timeout=90_000)
            expect(crash.locator(".jp-OutputArea")).to_contain_text("ZeroDivisionError")
            expect(crash.locator(".jp-OutputArea")).to_contain_text("return a / b")
            expect(page.locator(".na-debugline")).to_contain_text("crasher is in the debugger")
            page.screenshot(path=str(OUTPUT / "notebook7_debugger.png"))
            stdin.fill("c")
            stdin.press("Enter")
            expect(
                crash.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
            ).to_contain_text("ZeroDivisionError", timeout=60_000)
            expect(crash.locator(".jp-InputPrompt")).not_to_contain_text("*", timeout=60_000)
            expect(page.locator(".na-debugline")).to_have_text("", timeout=30_000)

            change_theme(page, "JupyterLab Dark")
            assert luminance(page, ".na-tree") < 0.25 < luminance(page, ".na-pill.na-s-idle") + 0.25
            assert clipped(page) == []
            tree.scroll_into_view_if_needed()
            tree.screenshot(path=str(OUTPUT / "notebook7_tree_dark.png"))
        except BaseException:
            if page is not None:  # what the browser showed when it failed
                page.screenshot(path=str(OUTPUT / "notebook7_failure.png"))
            raise
        finally:
            browser.close()
