"""Shared fixtures of the browser tests."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from notebook_actors.testing import descendants, kill_all, private_registry_addr

OUTPUT = Path(__file__).parent / "output"


@pytest.fixture
def jupyter_server(tmp_path: Path) -> Iterator[Callable[..., tuple[str, str]]]:
    """``start(module, root, log_name=None)``: a Jupyter server (``module``:
    ``"jupyterlab"`` or ``"notebook"``) on a free local port serving ``root``, alone on
    the host (a private registry, its own config/runtime/settings dirs under
    ``tmp_path``); returns ``(base url, token)``. Its log (and its kernels' stderr) goes
    to ``tests/browser/output/<log_name or module>.log``; at teardown the server shuts
    its kernels down, and what is left is killed."""
    from test_tree_widget_browser import free_port, wait_until_serving

    started: list[tuple[subprocess.Popen, object]] = []

    def start(module: str, root: Path, log_name: str | None = None) -> tuple[str, str]:
        port, token = free_port(), secrets.token_hex(16)
        env = {
            **os.environ,
            "NOTEBOOK_ACTORS_REGISTRY": private_registry_addr(),  # alone on the host
            "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
            "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
            "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
            "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
        }
        OUTPUT.mkdir(exist_ok=True)
        log = open(OUTPUT / f"{log_name or module}.log", "w")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                module,
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
        started.append((proc, log))
        base = f"http://127.0.0.1:{port}"
        wait_until_serving(f"{base}/api/status?token={token}", proc)
        return base, token

    try:
        yield start
    finally:
        for proc, log in started:
            pids = [p.pid for p in descendants(proc.pid)]
            proc.send_signal(signal.SIGTERM)  # the server shuts its kernels down
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                kill_all([proc.pid])
                proc.wait()
            kill_all(pids)  # last resort; the no-leftover guard reports real leaks
            log.close()  # type: ignore[attr-defined]
