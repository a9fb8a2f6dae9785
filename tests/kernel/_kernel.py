"""A real Jupyter kernel from this project's environment, driven over its sockets."""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass, field
from typing import Any

import psutil
from jupyter_client.manager import KernelManager

from notebook_actors import testing

#: Hang guard for one cell (not a timing assertion).
CELL_TIMEOUT = 60.0


@dataclass
class CellRun:
    """What one executed cell produced: its reply and its iopub messages in order."""

    reply: dict[str, Any]
    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> str:
        return self.reply["content"]["status"]

    @property
    def error(self) -> dict[str, Any]:
        for m in self.messages:
            if m["msg_type"] == "error":
                return m["content"]
        if self.reply.get("content", {}).get("status") == "error":  # e.g. a UsageError
            return self.reply["content"]
        return {}

    def stream(self, name: str | None = None) -> str:
        return "".join(
            m["content"]["text"]
            for m in self.messages
            if m["msg_type"] == "stream" and (name is None or m["content"]["name"] == name)
        )

    @property
    def outputs(self) -> list[dict[str, Any]]:
        kinds = ("stream", "display_data", "execute_result", "error", "clear_output", "update_display_data")
        return [m for m in self.messages if m["msg_type"] in kinds]

    @property
    def result(self) -> dict[str, Any]:
        for m in self.messages:
            if m["msg_type"] == "execute_result":
                return m["content"]["data"]
        return {}

    @property
    def displays(self) -> list[dict[str, Any]]:
        return [m["content"]["data"] for m in self.messages if m["msg_type"] == "display_data"]


class Kernel:
    """Start a kernel; execute cells; read their output from iopub."""

    def __init__(self, load: bool = False, kernel_name: str = "python3", cwd: str | None = None) -> None:
        import os
        import tempfile
        import uuid

        # a registry of its own: tests must not join another program's tree
        registry = os.path.join(tempfile.gettempdir(), f"na-test-registry-{uuid.uuid4().hex[:8]}.sock")
        env = {**os.environ, "NOTEBOOK_ACTORS_REGISTRY": registry}
        self.km = KernelManager(kernel_name=kernel_name)
        self.km.start_kernel(env=env, **({"cwd": cwd} if cwd else {}))
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=CELL_TIMEOUT)
        #: iopub messages read while collecting another cell's (a --bg cell's late output)
        self.stash: list[dict[str, Any]] = []
        if load:
            run = self.run("%load_ext notebook_actors")
            assert run.status == "ok", run.error

    def value(self, code: str) -> Any:
        """Run ``code`` whose last expression is a Python literal; return it."""
        import ast

        run = self.run(code)
        assert run.status == "ok", (run.error.get("ename"), run.error.get("evalue"), run.error.get("traceback"))
        return ast.literal_eval(run.result["text/plain"])

    @property
    def pid(self) -> int:
        return self.km.provisioner.process.pid  # type: ignore[union-attr]

    def submit(self, code: str, allow_stdin: bool = False) -> str:
        return self.kc.execute(code, allow_stdin=allow_stdin)

    def answer_prompt(self, value: str) -> dict[str, Any]:
        """Wait for the running cell's ``input_request``, answer ``value``; the request."""
        request = self.kc.get_stdin_msg(timeout=CELL_TIMEOUT)
        assert request["msg_type"] == "input_request", request
        self.kc.input(value)
        return request["content"]

    def collect(self, msg_id: str, until=None, timeout: float = CELL_TIMEOUT) -> CellRun:
        """Read iopub for ``msg_id`` until the kernel is idle (or ``until(msg)`` holds)."""
        run = CellRun(reply={})
        deadline = time.monotonic() + timeout
        stashed = [m for m in self.stash if m["parent_header"].get("msg_id") == msg_id]
        self.stash = [m for m in self.stash if m["parent_header"].get("msg_id") != msg_id]
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"cell {msg_id} did not finish; got {run.messages}")
            if stashed:
                msg = stashed.pop(0)
            else:
                try:
                    msg = self.kc.get_iopub_msg(timeout=left)
                except queue.Empty:
                    continue
            if msg["parent_header"].get("msg_id") != msg_id:
                if msg["msg_type"] != "status":
                    self.stash.append(msg)
                continue
            run.messages.append(msg)
            if until is not None and until(msg):
                self.stash.extend(stashed)
                return run
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        run.reply = self.kc.get_shell_msg(timeout=CELL_TIMEOUT)
        while run.reply["parent_header"].get("msg_id") != msg_id:
            run.reply = self.kc.get_shell_msg(timeout=CELL_TIMEOUT)
        return run

    def run(self, code: str) -> CellRun:
        return self.collect(self.submit(code))

    def descendants(self) -> list[psutil.Process]:
        """The actor processes below the kernel (fork-server templates left out)."""
        return testing.actor_descendants(self.pid)

    def shutdown(self) -> None:
        try:
            self.kc.stop_channels()
        finally:
            self.km.shutdown_kernel(now=False)
