"""The actor-tree widget in a real browser: JupyterLab started on a free local port,
driven by Playwright with the system Chromium, running examples/notebooks/tree_widget.ipynb."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from notebook_actors.testing import descendants, kill_all, private_registry_addr

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


@pytest.fixture
def jupyterlab(tmp_path):
    """A JupyterLab server on a free port, serving a copy of the example notebook."""
    root = tmp_path / "nb"
    root.mkdir()
    for name in ("tree_widget.ipynb", "tree_demo.py"):
        shutil.copy(EXAMPLE / name, root / name)
    port, token = free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "NOTEBOOK_ACTORS_REGISTRY": private_registry_addr(),  # alone on the host
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
    }
    OUTPUT.mkdir(exist_ok=True)
    log = open(OUTPUT / "jupyterlab.log", "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            f"--port={port}",
            "--ip=127.0.0.1",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            "--ServerApp.open_browser=False",
            "--allow-root",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(f"{base}/api/status?token={token}", proc)
        yield base, token
    finally:
        pids = [p.pid for p in descendants(proc.pid)]
        proc.send_signal(signal.SIGTERM)  # the server shuts its kernels down
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            kill_all([proc.pid])
            proc.wait()
        kill_all(pids)  # last resort; the no-leftover guard reports real leaks
        log.close()


@pytest.mark.timeout(300)  # JupyterLab's first load is slow on a busy machine
def test_tree_widget_in_jupyterlab(jupyterlab):
    """Test that the example notebook shows the actor tree in JupyterLab, that a
    worker's cancel button makes it leave the tree, and save a screenshot."""
    from playwright.sync_api import expect, sync_playwright

    base, token = jupyterlab
    OUTPUT.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = None
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base}/lab/tree/tree_widget.ipynb?token={token}")
            # The kernel is idle once JupyterLab shows it so; then run every cell.
            expect(page.locator(".jp-Notebook")).to_be_visible(timeout=90_000)
            expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(1, timeout=90_000)
            run_all_cells(page, base, token)

            nodes = page.locator(".na-node")
            for name in ("root", "pipeline", "producer", "worker-1", "worker-2", "worker-3"):
                expect(page.locator(f".na-node[data-name='{name}']")).to_have_count(1, timeout=120_000)
            producer = page.locator(".na-node[data-name='producer']")
            pipeline_key = page.locator(".na-node[data-name='pipeline']").get_attribute("data-key")
            expect(producer).to_have_attribute("data-parent", pipeline_key)
            expect(producer).to_have_attribute("data-depth", "2")
            expect(producer).to_have_attribute("data-state", "streaming", timeout=60_000)
            expect(producer.locator("> .na-line .na-pill")).to_have_text("streaming")
            assert nodes.count() == 6

            worker = page.locator(".na-node[data-name='worker-2']")
            worker.locator("> .na-line .na-cancel").click()
            expect(page.locator(".na-action.na-ok")).to_contain_text("cancel worker-2", timeout=30_000)
            expect(worker).to_have_count(0, timeout=60_000)
            expect(page.locator(".na-node[data-name='worker-1']")).to_have_count(1)

            page.locator(".na-node[data-name='producer'] > .na-line .na-caret").click()
            expect(page.locator(".na-node[data-name='producer'] .na-calls")).to_contain_text("produce")
            page.screenshot(path=str(OUTPUT / "tree_widget.png"), full_page=True)
        except BaseException:
            if page is not None:  # what the browser showed when it failed
                page.screenshot(path=str(OUTPUT / "failure.png"))
            raise
        finally:
            browser.close()
