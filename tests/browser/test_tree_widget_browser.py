"""The actor-tree widget in a real browser: JupyterLab started on a free local port,
driven by Playwright with the system Chromium, running examples/notebooks/tree_widget.ipynb
in the light and the dark theme, through a debugger session and a kernel restart.
Screenshots go to tests/browser/output/ (git-ignored)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "notebooks"
OUTPUT = Path(__file__).parent / "output"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is missing (apt-get install chromium)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_serving(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    """Poll the server's status endpoint until it answers (``timeout`` is a hang guard)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"jupyter lab exited early with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"jupyter lab did not answer at {url} within {timeout}s")
        time.sleep(0.2)


def one_idle_kernel(base: str, token: str, timeout: float = 90) -> str:
    """Wait until the server runs exactly one kernel and it is idle; return its id.

    Opening a notebook by URL sometimes starts two kernels and drops one; running cells
    before that settles loses them."""
    deadline = time.monotonic() + timeout
    while True:
        req = urllib.request.Request(f"{base}/api/kernels", headers={"Authorization": f"token {token}"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                kernels = json.loads(resp.read())
        except urllib.error.HTTPError as exc:  # the server lists a kernel it is dropping: 500
            if exc.code < 500 or time.monotonic() > deadline:
                raise
            kernels = []
        if len(kernels) == 1 and kernels[0]["execution_state"] == "idle":
            return kernels[0]["id"]
        if time.monotonic() > deadline:
            raise AssertionError(f"the kernels did not settle: {kernels}")
        time.sleep(0.2)


def accept_kernel_dialog(page) -> None:
    """JupyterLab may ask which kernel to use (when the session is not ready yet): keep
    the notebook's own (python3)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.locator(".jp-Dialog .jp-mod-accept").click(timeout=15_000)
    except PlaywrightTimeout:
        pass


def run_all_cells(page, base: str, token: str) -> None:
    """Run > Run All Cells, once the kernel has settled; again if nothing started."""
    from playwright.sync_api import expect

    first_prompt = page.locator(".jp-CodeCell .jp-InputPrompt").first
    for attempt in range(3):
        one_idle_kernel(base, token)
        page.locator(".lm-MenuBar-item", has_text="Run").click()
        page.locator(".lm-Menu-item[data-command='runmenu:run-all']").click()
        accept_kernel_dialog(page)
        try:
            expect(first_prompt).not_to_have_text("[ ]:", timeout=20_000)
            return
        except AssertionError:
            if attempt == 2:
                raise


#: Appended to the example in the test's copy: a breakpoint in calc, answered by the test.
DEBUG_CELL = "%%actor calc\nimport notebook_actors as na\n\nawait na.breakpoint()\nprint('calc resumed')"


#: ... and before it, a cell stuck in blocking code in a fresh actor (its own feed is frozen).
BLOCKING_CELL = "%%actor --bg blocker\nimport time\ntime.sleep(600)"


def write_notebook(root: Path) -> None:
    """The example notebook, plus a blocking cell and a cell that stops calc in its debugger."""
    nb = json.loads((EXAMPLE / "tree_widget.ipynb").read_text())
    for cell_id, source in (("blockcell", BLOCKING_CELL), ("debugcell", DEBUG_CELL)):
        nb["cells"].append(
            {
                "cell_type": "code",
                "execution_count": None,
                "id": cell_id,
                "metadata": {},
                "outputs": [],
                "source": source,
            }
        )
    (root / "tree_widget.ipynb").write_text(json.dumps(nb))
    shutil.copy(EXAMPLE / "tree_demo.py", root / "tree_demo.py")


def quiet_settings(settings: Path) -> None:
    """No news popup over the notebook (it would cover the widget in screenshots)."""
    path = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))


@pytest.fixture
def jupyterlab(tmp_path, jupyter_server):
    """A JupyterLab server on a free port, serving a copy of the example notebook."""
    root = tmp_path / "nb"
    root.mkdir()
    write_notebook(root)
    quiet_settings(tmp_path / "settings")
    return jupyter_server("jupyterlab", root)


def row(page, name: str):
    return page.locator(f".na-node[data-name='{name}']")


def column_lefts(page) -> list[list[int]]:
    """The left edge of every cell of the header and of every row."""
    return page.evaluate(
        """() => [...document.querySelectorAll('.na-head, .na-line')]
              .map((line) => [...line.children].map((cell) => Math.round(cell.getBoundingClientRect().left)))"""
    )


def clipped(page) -> list[str]:
    """Buttons, state words and crash lines that are cut off, by overflow or by the
    widget's own edge."""
    return page.evaluate(
        """() => {
          const edge = document.querySelector('.na-tree').getBoundingClientRect().right;
          return [...document.querySelectorAll('.na-btn, .na-pill, .na-crash')]
            .filter((e) => e.offsetParent)
            .filter((e) => e.scrollWidth > e.clientWidth + 1 || e.scrollHeight > e.clientHeight + 1
                           || e.getBoundingClientRect().right > edge + 0.5)
            .map((e) => e.className + ': ' + e.textContent);
        }"""
    )


def luminance(page, selector: str) -> float:
    """Relative luminance (0 black .. 1 white) of an element's computed background."""
    rgb = page.evaluate(
        "(s) => getComputedStyle(document.querySelector(s)).backgroundColor.match(/[0-9.]+/g).slice(0, 3).map(Number)",
        selector,
    )
    return sum(w * c / 255 for w, c in zip((0.2126, 0.7152, 0.0722), rgb, strict=True))


def change_theme(page, theme: str) -> None:
    page.locator(".lm-MenuBar-item", has_text="Settings").click()
    page.locator(".lm-Menu-item", has_text="Theme").first.hover()
    page.get_by_role("menuitem", name=theme, exact=True).click()
    page.wait_for_function("(t) => document.body.dataset.jpThemeName === t", arg=theme, timeout=30_000)
    page.wait_for_timeout(500)  # let the theme's stylesheet apply before a screenshot


def pids_gone(pids: list[int], timeout: float = 60) -> bool:
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.timeout(420)  # JupyterLab's first load is slow on a busy machine
def test_tree_widget_in_jupyterlab(jupyterlab):
    """Test the example notebook's tree in JupyterLab: aligned columns, a running cell
    as "cell [n], t s", a readable crash with restart, no clipped controls, the
    debugger's holder while calc is stopped and nothing stale after `c`, both themes,
    and a disconnected view (not "live") after a kernel restart; screenshots of each."""
    from playwright.sync_api import expect, sync_playwright

    base, token = jupyterlab
    OUTPUT.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = None
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base}/lab/tree/tree_widget.ipynb?token={token}")
            expect(page.locator(".jp-Notebook")).to_be_visible(timeout=90_000)
            expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(1, timeout=90_000)
            run_all_cells(page, base, token)

            for name in ("calc", "crunch", "pipeline", "producer", "divider"):
                expect(row(page, name)).to_have_count(1, timeout=120_000)
            [kernel_key] = [
                k for k in page.eval_on_selector_all(".na-node[data-depth='0']", "rs => rs.map(r => r.dataset.key)")
            ]
            expect(row(page, "crunch")).to_have_attribute("data-state", "running")
            expect(row(page, "crunch").locator(".na-doing")).to_have_text(re.compile(r"^cell \[\d+\], \d+(\.\d)? s$"))
            # stuck in time.sleep, it cannot report itself: the kernel says which cell runs there
            expect(row(page, "blocker")).to_have_attribute("data-state", "running", timeout=60_000)
            expect(row(page, "blocker").locator(".na-doing")).to_have_text(re.compile(r"^cell \[\d+\], \d+(\.\d)? s$"))
            producer = row(page, "producer")
            expect(producer).to_have_attribute("data-state", "streaming", timeout=60_000)
            expect(producer).to_have_attribute("data-parent", row(page, "pipeline").get_attribute("data-key"))
            expect(producer).to_have_attribute("data-depth", "2")
            divider = row(page, "divider")
            expect(divider).to_have_attribute("data-state", "crashed")
            expect(divider.locator("> .na-crash")).to_have_text("ZeroDivisionError: division by zero")
            expect(divider.locator("> .na-line .na-pill")).to_have_text("crashed")
            expect(divider.locator("> .na-line .na-restart")).to_be_enabled()
            expect(row(page, "calc")).to_have_attribute("data-parent", kernel_key)

            # The last cell stops calc in its debugger: the tree names the holder.
            expect(page.locator(".jp-Stdin-input")).to_be_visible(timeout=60_000)
            expect(row(page, "calc")).to_have_attribute("data-state", "debugger", timeout=30_000)
            expect(page.locator(".na-debugline")).to_contain_text("calc is in the debugger")
            expect(row(page, "calc").locator(".na-doing")).to_have_text("in the debugger")

            # Sparklines fill as seconds pass (one sample a second).
            page.wait_for_function(
                "() => (document.querySelector(`.na-node[data-name='crunch'] .na-spark-cpu .na-spark-line`)"
                ".getAttribute('d') || '').split('L').length > 40",
                timeout=90_000,
            )
            lefts = column_lefts(page)
            assert len(lefts) >= 7 and all(line == lefts[0] for line in lefts), lefts
            assert clipped(page) == []
            tree = page.locator(".na-tree")
            tree.scroll_into_view_if_needed()
            tree.screenshot(path=str(OUTPUT / "tree_widget_light.png"))
            page.screenshot(path=str(OUTPUT / "tree_widget_light_page.png"))

            # `c` ends the session: no holder left, calc back to idle.
            page.locator(".jp-Stdin-input").fill("c")
            page.locator(".jp-Stdin-input").press("Enter")
            expect(page.locator(".jp-OutputArea-output", has_text="calc resumed")).to_have_count(1, timeout=60_000)
            expect(row(page, "calc")).to_have_attribute("data-state", "idle", timeout=30_000)
            expect(page.locator(".na-debugline")).to_have_text("")
            expect(row(page, "calc").locator(".na-doing")).to_have_text("")

            change_theme(page, "JupyterLab Dark")
            assert luminance(page, ".na-tree") < 0.25 < luminance(page, ".na-pill.na-s-idle") + 0.25
            assert clipped(page) == []
            tree.scroll_into_view_if_needed()
            tree.screenshot(path=str(OUTPUT / "tree_widget_dark.png"))

            # stack: every task and thread of crunch, under its row
            crunch = row(page, "crunch")
            crunch_pid = crunch.locator("> .na-line .na-c-pid").text_content()
            crunch.locator("> .na-line .na-stack").click()
            expect(crunch.locator("> .na-stackbox pre")).to_contain_text(f"pid {crunch_pid}", timeout=30_000)
            expect(page.locator(".na-action.na-ok")).to_contain_text("stack crunch")
            tree.screenshot(path=str(OUTPUT / "tree_widget_stack.png"))
            crunch.locator("> .na-stackbox .na-close").click()
            expect(crunch.locator("> .na-stackbox")).to_be_hidden()

            # A button: cancel calc; it leaves the tree and the answer says so.
            row(page, "calc").locator("> .na-line .na-cancel").click()
            expect(page.locator(".na-action.na-ok")).to_contain_text("cancel calc", timeout=30_000)
            expect(row(page, "calc")).to_have_count(0, timeout=60_000)

            # Restart the kernel: the view must not stay "live" with dead processes.
            pids = [int(t) for t in page.locator(".na-node .na-c-pid").all_text_contents() if t.isdigit()]
            assert len(pids) >= 5
            page.locator(".lm-MenuBar-item", has_text="Kernel").click()
            page.locator(".lm-Menu-item[data-command='kernelmenu:restart']").click()
            page.locator(".jp-Dialog .jp-mod-accept").click()
            expect(page.locator(".na-conn")).to_have_text("disconnected", timeout=60_000)
            expect(page.locator(".na-note")).to_contain_text("kernel is gone")
            expect(page.locator(".na-tree .na-btn:not(:disabled)")).to_have_count(0)
            assert pids_gone(pids), "the actors outlived their kernel"
            tree.screenshot(path=str(OUTPUT / "tree_widget_after_restart.png"))
        except BaseException:
            if page is not None:  # what the browser showed when it failed
                page.screenshot(path=str(OUTPUT / "failure.png"))
            raise
        finally:
            browser.close()
