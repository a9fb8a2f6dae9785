"""What an ``%%actor`` cell shows in a real browser, in JupyterLab and in Notebook 7:
live output of a ``time.sleep`` loop while the cell runs, a matplotlib figure from an
actor as an image, ``input()`` answered in the page, a multi-actor cell with labelled
output, ``%actor stack`` of an actor stuck in blocking code, and a kill from the tree
widget ending the running (``--bg``) cell in one line. JupyterLab's screenshots are the
ones docs/notebook.md embeds (docs/img/cell_*.png); Notebook 7's go to
tests/browser/output/ (git-ignored)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_notebook7 import code_cell, write_notebook
from test_tree_widget_browser import CHROMIUM, CHROMIUM_ARGS, quiet_settings, row, run_all_cells

REPO = Path(__file__).resolve().parents[2]
DOCS_IMG = REPO / "docs" / "img"
OUTPUT = Path(__file__).parent / "output"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing")

LIVE, PLOT, ASK, MULTI, STUCK, STACK, TREE = 1, 2, 3, 4, 5, 6, 7


def cells(go: Path, ready: Path) -> list[str]:
    """The notebook: the live cell prints until the test creates ``go``; ``stuck``
    creates ``ready`` once it is inside crunch_forever."""
    return [
        "%load_ext notebook_actors",
        "%%actor worker\nimport os, time\ni = 0\n"
        f"while not os.path.exists({str(go)!r}):\n"
        "    print('step', i, flush=True)\n    i += 1\n    time.sleep(0.3)\nprint('worker done')",
        "%%actor plotter\nimport matplotlib.pyplot as plt\nimport numpy as np\n"
        "x = np.linspace(0, 6, 200)\nfig, ax = plt.subplots(figsize=(4, 2.5))\n"
        "ax.plot(x, np.sin(x))\nax.set_title('drawn in actor plotter')\nplt.show()",
        "%%actor asker\nname = input('your name? ')\nprint('hello,', name)",
        "%%actor w1 w2 --group actor\nimport os\nprint('pid', os.getpid())\nna.current_actor().name.upper()",
        "%%actor stuck --bg\nimport time\n\ndef crunch_forever():\n"
        f"    open({str(ready)!r}, 'w').close()\n    while True:\n        time.sleep(0.05)\n\ncrunch_forever()",
        "import os, time\n"
        f"while not os.path.exists({str(ready)!r}):  # until crunch_forever runs\n"
        "    time.sleep(0.01)\n%actor stack stuck",
        "%actor tree",
    ]


@pytest.fixture(params=["jupyterlab", "notebook"])
def server(request, tmp_path, jupyter_server):
    """A JupyterLab or Notebook 7 server serving the notebook of :func:`cells`."""
    root = tmp_path / "nb"
    root.mkdir()
    go, ready = tmp_path / "go", tmp_path / "ready"
    write_notebook(root / "cells.ipynb", cells(go, ready))
    quiet_settings(tmp_path / "settings")
    base, token = jupyter_server(request.param, root)
    return request.param, base, token, go


def outputs(cell):
    return cell.locator(".jp-OutputArea")


@pytest.mark.timeout(600)  # the first load is slow on a busy machine
def test_cell_features_show_in_the_browser(server):
    """Test each cell feature is visible in the page (DOM assertions), and keep a
    screenshot of each cell."""
    from playwright.sync_api import expect, sync_playwright

    app, base, token, go = server
    lab = app == "jupyterlab"
    shots = DOCS_IMG if lab else OUTPUT
    prefix = "cell_" if lab else "notebook7_cell_"
    OUTPUT.mkdir(exist_ok=True)
    url = f"{base}/lab/tree/cells.ipynb?token={token}" if lab else f"{base}/notebooks/cells.ipynb?token={token}"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = None
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 1000})
            page.goto(url)
            expect(page.locator(".jp-Notebook")).to_be_visible(timeout=90_000)
            run_all_cells(page, base, token)

            def shot(index: int, name: str) -> None:
                cell = code_cell(page, index)
                cell.scroll_into_view_if_needed()
                cell.screenshot(path=str(shots / f"{prefix}{name}.png"))

            # 1. Live output: lines of the time.sleep loop show while the cell runs ([*]).
            live = code_cell(page, LIVE)
            expect(live.locator(".jp-OutputArea-output", has_text="step 3")).to_have_count(1, timeout=120_000)
            expect(live.locator(".jp-InputPrompt")).to_contain_text("*")
            expect(outputs(live)).not_to_contain_text("worker done")
            shot(LIVE, "live_output")
            go.touch()
            expect(outputs(live)).to_contain_text("worker done", timeout=60_000)

            # 2. matplotlib: the figure is an image, not "<Figure size ...>".
            plot = code_cell(page, PLOT)
            img = plot.locator(".jp-OutputArea-output img[src^='data:image/png']")
            expect(img).to_have_count(1, timeout=120_000)
            expect(outputs(plot)).not_to_contain_text("<Figure")
            assert img.evaluate("(e) => e.complete && e.naturalWidth") > 100
            shot(PLOT, "matplotlib")
            if not lab:  # Notebook 7: live output and the figure are what this run checks
                return

            # 4. input(): the prompt is in the page; the answer reaches the actor.
            ask = code_cell(page, ASK)
            stdin = ask.locator(".jp-Stdin-input")
            expect(stdin).to_be_visible(timeout=120_000)
            expect(ask.locator(".jp-Stdin-prompt")).to_contain_text("your name?")
            stdin.fill("Ada")
            shot(ASK, "input_prompt")
            stdin.press("Enter")
            expect(outputs(ask)).to_contain_text("hello, Ada", timeout=60_000)

            # 6. Several actors in one cell: output and values labelled by actor.
            multi = code_cell(page, MULTI)
            for name in ("w1", "w2"):
                expect(outputs(multi)).to_contain_text(f"[{name}] pid", timeout=120_000)
                expect(outputs(multi)).to_contain_text(f"[{name}] Out: '{name.upper()}'")
            shot(MULTI, "multi_actor")

            # 7. %actor stack of an actor stuck in blocking code names the function.
            stack = code_cell(page, STACK)
            expect(outputs(stack)).to_contain_text("crunch_forever", timeout=120_000)
            expect(outputs(stack)).to_contain_text("stuck")
            shot(STACK, "stack")

            # 3. Kill from the tree widget under the running --bg cell: one line in it.
            stuck = row(page, "stuck")
            expect(stuck).to_have_attribute("data-state", "running", timeout=60_000)
            stuck.locator("> .na-line .na-kill").click()
            expect(page.locator(".na-action.na-ok")).to_contain_text("kill stuck", timeout=30_000)
            bg = code_cell(page, STUCK)
            expect(outputs(bg)).to_contain_text("actor 'stuck' was killed (SIGKILL) by you", timeout=60_000)
            said = bg.locator(".jp-OutputArea-output", has_text="was killed")
            expect(said).to_have_count(1)
            text = said.inner_text().strip()
            assert len(text.splitlines()) == 1, text
            assert "Traceback" not in text and "ExceptionGroup" not in text, text
            shot(STUCK, "kill_one_line")
        except BaseException:
            if page is not None:  # what the browser showed when it failed
                page.screenshot(path=str(OUTPUT / f"{app}_cells_failure.png"))
            raise
        finally:
            browser.close()
