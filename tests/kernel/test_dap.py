"""JupyterLab's debug protocol (DAP over the kernel's control channel) on an actor:
``%actor debugger NAME`` sends the kernel's ``debug_request``s to debugpy inside the
actor, carried by the tree. Driven with jupyter_client, as JupyterLab's panel does."""

from __future__ import annotations

import queue
import time
from typing import Any

from _kernel import CELL_TIMEOUT

MODULE = "def compute(x):\n    doubled = x * 2\n    return doubled + 1\n"


class Dap:
    """A DAP client on a kernel's control channel (what JupyterLab's debugger sends)."""

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel
        self.seq = 0

    def request(self, command: str, **arguments: Any) -> dict[str, Any]:
        kc = self.kernel.kc
        self.seq += 1
        content = {"seq": self.seq, "type": "request", "command": command, "arguments": arguments}
        msg = kc.session.msg("debug_request", content)
        kc.control_channel.send(msg)
        deadline = time.monotonic() + CELL_TIMEOUT
        while time.monotonic() < deadline:
            reply = kc.control_channel.get_msg(timeout=CELL_TIMEOUT)
            if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
                return reply["content"]
        raise TimeoutError(f"no reply to {command}")

    def event(self, name: str) -> dict[str, Any]:
        """The next ``debug_event`` called ``name`` on IOPub."""
        kernel = self.kernel
        deadline = time.monotonic() + CELL_TIMEOUT
        while time.monotonic() < deadline:
            for msg in list(kernel.stash):
                if msg["msg_type"] == "debug_event" and msg["content"].get("event") == name:
                    kernel.stash.remove(msg)
                    return msg["content"]
            try:
                msg = kernel.kc.get_iopub_msg(timeout=0.5)
            except queue.Empty:
                continue
            kernel.stash.append(msg)
        raise TimeoutError(f"no {name} event")


def test_the_debug_protocol_stops_inside_an_actor(kernel, tmp_path):
    """Test initialize, attach, setBreakpoints in a module an actor runs, the stopped
    event from the actor, stackTrace, scopes, variables and continue, all through the
    kernel's control channel; the actor's cell then finishes with its result."""
    (tmp_path / "dap_target.py").write_text(MODULE)
    setup = kernel.run(f"%%actor dbg\nimport sys\nsys.path.insert(0, {str(tmp_path)!r})\nimport dap_target")
    assert setup.status == "ok", setup.error
    switched = kernel.run("%actor debugger dbg")
    assert switched.status == "ok", switched.error
    assert "now debugs actor dbg" in switched.stream("stdout")
    dap = Dap(kernel)
    init = dap.request("initialize", clientID="test", adapterID="python", linesStartAt1=True, pathFormat="path")
    assert init["success"] and init["body"]["supportsConfigurationDoneRequest"]
    assert dap.request("attach", justMyCode=False)["success"]
    path = str(tmp_path / "dap_target.py")
    bps = dap.request("setBreakpoints", source={"path": path}, breakpoints=[{"line": 3}])
    assert bps["success"] and bps["body"]["breakpoints"][0]["verified"]
    assert dap.request("configurationDone")["success"]

    cell = kernel.submit("%%actor dbg\nprint('result', dap_target.compute(20))")
    stopped = dap.event("stopped")
    assert stopped["body"]["reason"] == "breakpoint"
    thread = stopped["body"]["threadId"]
    frames = dap.request("stackTrace", threadId=thread)["body"]["stackFrames"]
    assert (frames[0]["name"], frames[0]["line"], frames[0]["source"]["path"]) == ("compute", 3, path)
    scopes = dap.request("scopes", frameId=frames[0]["id"])["body"]["scopes"]
    local = next(s for s in scopes if s["name"] == "Locals")
    variables = dap.request("variables", variablesReference=local["variablesReference"])["body"]["variables"]
    assert {v["name"]: v["value"] for v in variables} == {"x": "20", "doubled": "40"}
    assert dap.request("continue", threadId=thread)["success"]

    run = kernel.collect(cell)
    assert run.status == "ok", run.error
    assert "result 41" in run.stream("stdout")
    dap.request("disconnect", restart=False)
    back = kernel.run("%actor debugger off")
    assert back.status == "ok" and "debugs the kernel again" in back.stream("stdout")


def test_debugger_of_an_unknown_actor_is_one_clear_error(kernel):
    """Test that `%actor debugger NAME` for no such actor fails with one line."""
    run = kernel.run("%actor debugger nobody")
    assert run.status == "error" and "no actor 'nobody'" in run.error["evalue"]


CELL = "%%actor dbg\ntotal = 0\nfor i in range(3):\n    total += i\nprint('total', total)"


JUPYTERLAB_INITIALIZE = {
    "clientID": "jupyterlab",
    "clientName": "JupyterLab",
    "adapterID": "python3",
    "pathFormat": "path",
    "linesStartAt1": True,
    "columnsStartAt1": True,
    "supportsVariableType": True,
    "supportsVariablePaging": True,
    "supportsRunInTerminalRequest": True,
    "locale": "en",
}


def test_breakpoints_in_an_actor_cell_stop_in_the_actor(kernel):
    """Test JupyterLab's sequence for a cell (its arguments, no configurationDone: the
    kernel sends that after attach): debugInfo says how cells are named,
    dumpCell writes the cell, setBreakpoints on that file stops the `%%actor` cell in the
    actor (the frame is the notebook's cell, its line the editor's), variables show the
    actor's values; debugInfo then lists the breakpoint and the stopped thread."""
    assert kernel.run("%%actor dbg\nimport os\nos.getpid()").status == "ok"
    assert kernel.run("%actor debugger dbg").status == "ok"
    dap = Dap(kernel)
    info = dap.request("debugInfo")["body"]
    assert info["isStarted"] is False and info["hashMethod"] == "Murmur2"
    # JupyterLab's own arguments; it sends no configurationDone (ipykernel's debugger does)
    assert dap.request("initialize", **JUPYTERLAB_INITIALIZE)["success"]
    assert dap.request("attach")["success"]
    path = dap.request("dumpCell", code=CELL)["body"]["sourcePath"]
    assert path.startswith(info["tmpFilePrefix"]) and path.endswith(info["tmpFileSuffix"])
    with open(path) as f:
        assert f.read() == CELL
    assert dap.request("setBreakpoints", source={"path": path}, breakpoints=[{"line": 4}])["success"]

    cell = kernel.submit(CELL)
    stopped = dap.event("stopped")
    thread = stopped["body"]["threadId"]
    # the cell is the only frame: the runtime's own (running it in the actor) are left out
    [frame] = dap.request("stackTrace", threadId=thread)["body"]["stackFrames"]
    assert (frame["source"]["path"], frame["line"]) == (path, 4)
    scopes = dap.request("scopes", frameId=frame["id"])["body"]["scopes"]
    found: dict[str, str] = {}
    for scope in scopes:
        for v in dap.request("variables", variablesReference=scope["variablesReference"])["body"]["variables"]:
            found.setdefault(v["name"], v["value"])
    assert (found["i"], found["total"]) == ("0", "0")
    info = dap.request("debugInfo")["body"]
    assert info["isStarted"] and info["stoppedThreads"] == [thread]
    assert info["breakpoints"] == [{"source": path, "breakpoints": [{"line": 4}]}]

    assert dap.request("setBreakpoints", source={"path": path}, breakpoints=[])["success"]
    assert dap.request("continue", threadId=thread)["success"]
    run = kernel.collect(cell)
    assert run.status == "ok", run.error
    assert "total 3" in run.stream("stdout")
    assert dap.request("debugInfo")["body"]["stoppedThreads"] == []
    dap.request("disconnect", restart=False)
    assert kernel.run("%actor debugger off").status == "ok"
