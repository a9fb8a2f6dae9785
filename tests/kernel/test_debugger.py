"""pdb++ sessions of actors shown in notebook cells, driven over jupyter_client's stdin channel."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable

import pytest
from _kernel import CELL_TIMEOUT, CellRun

#: Seconds one poll of a channel waits before the driver looks at the other one.
POLL = 0.05


class Session:
    """A cell run with allow_stdin=True whose input_request prompts are answered."""

    def __init__(self, kernel, code: str) -> None:
        self.kernel = kernel
        self.msg_id = kernel.kc.execute(code, allow_stdin=True)
        self.run = CellRun(reply={})
        self.prompts: list[str] = []
        self.idle = False
        self.pending: str | None = None  # the prompt waiting for an answer

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None and not self.idle:  # a failed test must not leave a session open
            self.finish()

    def text(self) -> str:
        return self.run.stream()

    def pump_iopub(self) -> None:
        while True:
            try:
                msg = self.kernel.kc.get_iopub_msg(timeout=POLL)
            except queue.Empty:
                return
            if msg["parent_header"].get("msg_id") != self.msg_id:
                continue
            self.run.messages.append(msg)
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                self.idle = True
                return

    def next_prompt(self) -> str | None:
        """Wait for the next input_request (its prompt), or None once the cell finished."""
        deadline = time.monotonic() + CELL_TIMEOUT
        while time.monotonic() < deadline:
            try:
                msg = self.kernel.kc.get_stdin_msg(timeout=POLL)
            except queue.Empty:
                self.pump_iopub()
                if self.idle:
                    return None
                continue
            if msg["msg_type"] == "input_request":
                self.pump_iopub()  # the output printed before the prompt
                self.pending = msg["content"]["prompt"]
                self.prompts.append(self.pending)
                return self.pending
        raise TimeoutError(f"no prompt and no end of the cell; output so far:\n{self.text()}")

    def answer(self, line: str) -> None:
        self.pending = None
        self.kernel.kc.input(line)

    def ask(self, line: str) -> str:
        """Answer the pending prompt with ``line``; return the output up to the next prompt."""
        start = len(self.text())
        self.answer(line)
        self.next_prompt()
        return self.text()[start:]

    def finish(self, answer: Callable[[str], str] = lambda prompt: "c") -> CellRun:
        """Answer every further prompt with ``answer(prompt)`` until the cell ends."""
        if self.pending is not None:
            self.answer(answer(self.pending))
        while (prompt := self.next_prompt()) is not None:
            self.answer(answer(prompt))
        self.run.reply = self.kernel.kc.get_shell_msg(timeout=CELL_TIMEOUT)
        while self.run.reply["parent_header"].get("msg_id") != self.msg_id:
            self.run.reply = self.kernel.kc.get_shell_msg(timeout=CELL_TIMEOUT)
        return self.run

    def first_lines_at_stops(self, line: str, at: Callable[[str], bool] = lambda prompt: True) -> list[str]:
        """At each stop whose prompt ``at`` accepts, ask ``line`` and keep the first line
        of its answer; continue every stop with ``c`` until the cell ends."""
        seen = []
        while (prompt := self.next_prompt()) is not None:
            if at(prompt):
                seen.append(self.ask(line).strip().splitlines()[0])
            self.answer("c")
        self.finish()
        return seen


def wait_parked(kernel) -> list[str]:
    """Wait (in the kernel, woken by polling its front end) until an actor's session is
    parked; return the names of the parked actors."""
    return kernel.value(
        "import trio\nfrom notebook_actors.kernel_ext import _debugger\n"
        "with trio.fail_after(60):\n"
        "    while not _debugger.front_end().parked:\n"
        "        await trio.sleep(0.05)\n"
        "[p.name for p in _debugger.front_end().parked]"
    )


NESTED_CRASH = (
    "%%actor outer --debug\n"
    "import notebook_actors as na\n"
    "def divide(a, b):\n"
    "    ratio = a / b\n"
    "    return ratio\n"
    "async def middle(a):\n"
    "    async with na.open_nursery() as n:\n"
    "        p = await n.run_in_actor(divide, a=a, b=0)\n"
    "        return await p.result()\n"
    "async with na.open_nursery() as n:\n"
    "    p = await n.run_in_actor(middle, a=7)\n"
    "    await p.result()\n"
)


def test_crash_in_a_nested_actor_opens_a_post_mortem_in_the_cell(kernel):
    """Test that a crash two levels below an %%actor --debug cell is debugged in the cell, then reaches it."""
    with Session(kernel, NESTED_CRASH) as s:
        prompt = s.next_prompt()
        assert prompt is not None and "divide" in prompt  # the prompt names the crashed actor
        head = s.text()
        assert (
            "Attaching to pdb in crashed actor: ('divide', '" in head and "ZeroDivisionError: division by zero" in head
        )
        assert "divide()" in head and "ratio = a / b" in head  # the crashing frame, with its source
        assert s.ask("p a, b").strip().splitlines()[0] == "(7, 0)"
        assert s.ask("pp sorted(locals())").strip().splitlines()[0] == "['a', 'b']"
        assert "divide()" in s.ask("where")
        assert "def divide(a, b):" in s.ask("ll")  # the source of a function defined in the cell
        run = s.finish()  # `c` here, and at the post-mortems of the boxed error up the tree
    assert [p for p in s.prompts if "divide" not in p and "(Pdb++" in p]  # the parents' post-mortems followed
    assert any("middle" in p for p in s.prompts)
    assert run.status == "error"
    assert "ZeroDivisionError" in run.error["evalue"] + "\n".join(run.error["traceback"])
    assert kernel.value("%%actor outer\n1 + 1") == 2  # the cell's actor is still alive
    assert [p.pid for p in kernel.descendants()] == [kernel.value("%%actor outer\nimport os\nos.getpid()")]
    assert kernel.value("import notebook_actors as na\nlen(na.current_actor().children)") == 1  # only `outer`


BREAKPOINT_LOOP = (
    "%%actor looper\n"
    "import notebook_actors as na\n"
    "total = 0\n"
    "for i in range(3):\n"
    "    total += i\n"
    "    await na.breakpoint()\n"
    "    print(f'after stop {i}')\n"
    "total\n"
)


def test_breakpoint_in_a_loop_stops_three_times_and_output_keeps_flowing(kernel):
    """Test that await na.breakpoint() in a loop stops on each visit; continuing resumes; output follows."""
    s = Session(kernel, BREAKPOINT_LOOP)
    seen = s.first_lines_at_stops("p i, total")
    assert all("looper" in prompt for prompt in s.prompts), s.prompts
    assert seen == ["(0, 0)", "(1, 1)", "(2, 3)"]
    out = s.text()
    assert out.index("after stop 0") < out.index("after stop 1") < out.index("after stop 2")
    assert s.run.result["text/plain"] == "3"


def test_builtin_breakpoint_in_debug_mode(kernel):
    """Test that the builtin breakpoint() in a --debug actor opens the session at its line."""
    s = Session(kernel, "%%actor builtin --debug\nanswer = 6 * 7\nbreakpoint()\nprint('resumed', answer)\n")
    assert s.next_prompt() is not None
    assert s.ask("p answer").strip().splitlines()[0] == "42"
    run = s.finish()
    assert run.status == "ok" and "resumed 42" in s.text()


TWO_CRASHES = (
    "%%actor pair --debug\n"
    "import notebook_actors as na\n"
    "def fail(tag):\n"
    "    raise ValueError(tag)\n"
    "async with na.open_nursery() as n:\n"
    "    await n.run_in_actor(fail, name='first', tag='one')\n"
    "    await n.run_in_actor(fail, name='second', tag='two')\n"
)


def test_two_actors_crashing_together_are_debugged_one_after_the_other(kernel):
    """Test that two crashing actors queue on the lock: one session at a time, the cell says who waits."""
    s = Session(kernel, TWO_CRASHES)
    assert s.next_prompt() is not None
    # hold the first session until the other crash queues (the order comes from the notice)
    deadline = time.monotonic() + CELL_TIMEOUT
    while "waiting:" not in s.text() and time.monotonic() < deadline:
        s.pump_iopub()
    assert "waiting:" in s.text()  # the second crash is shown waiting for the first session
    first = s.ask("p tag").strip().splitlines()[0]
    s.answer("c")
    tags = [first, *s.first_lines_at_stops("p tag", at=lambda prompt: "first" in prompt or "second" in prompt)]
    assert sorted(tags) == ["'one'", "'two'"]


def interrupt_a_breakpoint_session(kernel, actor: str) -> None:
    """Run a cell that awaits na.breakpoint() in ``actor``, interrupt it at the prompt
    and check that the session and the cell ended and that the actor still answers."""
    s = Session(kernel, f"%%actor {actor}\nimport notebook_actors as na\nawait na.breakpoint()\nprint('not reached')\n")
    assert s.next_prompt() is not None
    kernel.km.interrupt_kernel()
    s.pending = None  # nobody answers: the interrupt ends the session
    run = s.finish()
    assert run.error["ename"] == "KeyboardInterrupt"
    assert "not reached" not in s.text() and "interrupted" in s.text(), s.text()
    assert kernel.value(f"%%actor {actor}\n'still alive'") == "still alive"


def test_interrupt_during_a_session_ends_it_and_the_kernel_stays_usable(kernel):
    """Test that interrupting the cell while a session waits for input quits it and cancels the task."""
    interrupt_a_breakpoint_session(kernel, "stopper")


def test_parked_session_is_opened_from_a_later_cell(kernel, tmp_path):
    """Test that a crash in a --bg cell's actor parks it; %actor debug NAME opens it in a new cell."""
    run = kernel.run(
        "%%actor bgcrash --debug --bg\nimport trio\nsecret = 'parked value'\nawait trio.sleep(0)\nraise KeyError(secret)\n"
    )
    assert run.status == "ok"
    # the crash parks; wait for it through the tree data (a message, not a sleep)
    assert wait_parked(kernel) == ["bgcrash"]
    tree = (  # the tree widget's data lists it as parked
        "from notebook_actors import _tree\n"
        "async with _tree.open_tree_watch(0.1) as watch:\n"
        "    tree = watch.snapshot()\n"
        "[tree['nodes'][key]['name'] for key in tree['debug']['parked']]"
    )
    assert kernel.value(tree) == ["bgcrash"]
    button = (  # the widget's debug button says how to open it
        "from notebook_actors.widgets._tree_widget import run_action\n"
        "import notebook_actors as na\n"
        "answer = await run_action(na.current_actor(), tree, {'action': 'debug', 'key': tree['debug']['parked'][0]})\n"
        "(answer['ok'], answer['message'])"
    )
    ok, message = kernel.value(button)
    assert ok and "%actor debug bgcrash" in message
    assert kernel.value("%%actor other\n'other work is not blocked'") == "other work is not blocked"
    s = Session(kernel, "%actor debug bgcrash")
    assert s.next_prompt() is not None
    assert "KeyError" in s.text()
    assert s.ask("p secret").strip().splitlines()[0] == "'parked value'"
    run = s.finish()
    assert run.status == "ok"
    assert "ended" in s.text()
    assert kernel.run("%actor debug nobody").error["ename"] == "UsageError"


def test_without_stdin_the_cell_shows_the_traceback_and_does_not_hang(kernel):
    """Test that allow_stdin=False (nbclient) gets the stack and a note, and the cell ends."""
    run = kernel.run(NESTED_CRASH.replace("outer", "nostdin"))
    assert run.status == "error"
    text = run.stream()
    assert "allow_stdin=False" in text and "ZeroDivisionError" in text and "ratio = a / b" in text


def test_ipython_debug_still_works(kernel):
    """Test that IPython's own %debug opens stock pdb after %load_ext notebook_actors."""
    assert kernel.run("def broken():\n    hidden = 'x' * 3\n    1 / 0\nbroken()").status == "error"
    s = Session(kernel, "%debug")
    assert s.next_prompt() is not None
    assert "'xxx'" in s.ask("p hidden")
    s.finish(lambda prompt: "q")
    assert s.run.status == "ok"


def test_example_notebook_runs_headless_without_hanging():
    """Test that nbclient (no stdin) runs examples/notebooks/debugging.ipynb: every session prints and continues."""
    from pathlib import Path

    import nbformat
    from nbclient import NotebookClient

    path = Path(__file__).parents[2] / "examples" / "notebooks" / "debugging.ipynb"
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    cells = [c for c in nb.cells if c.cell_type == "code"]

    def text(cell) -> str:
        return "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in cell.outputs)

    crash, loop, pair, _bg, other, parked, _cleanup = cells[1:]
    assert "allow_stdin=False" in text(crash) and "Attaching to pdb in crashed actor: ('divide', '" in text(crash)
    assert [o.ename for o in crash.outputs if o.output_type == "error"] == ["RemoteActorError"]
    assert "step 2: total = 3" in text(loop) and "3" in loop.outputs[-1]["data"]["text/plain"]
    assert "ValueError: one" in text(pair) and "ValueError: two" in text(pair)
    assert "keep working" in text(other)
    assert "KeyError: 'found me'" in text(parked)


def test_killing_a_parked_actor_ends_its_session(kernel):
    """Test that %actor kill stops an actor parked in its debugger instead of waiting for the session."""
    assert kernel.run("%%actor doomed --debug --bg\nimport trio\nawait trio.sleep(0)\n1 / 0\n").status == "ok"
    assert wait_parked(kernel) == ["doomed"]
    assert kernel.run("%actor kill doomed").status == "ok"
    assert kernel.value("from notebook_actors.kernel_ext import _debugger\nlen(_debugger.front_end().parked)") == 0
    assert kernel.descendants() == []


def test_breakpoint_in_the_kernels_own_actor_is_refused_clearly(kernel):
    """Test that awaiting na.breakpoint() in a plain cell says why it cannot prompt, and frees the REPL."""
    run = kernel.run("import notebook_actors as na\nawait na.breakpoint()")
    assert run.status == "error" and "block the event loop" in run.error["evalue"]
    with Session(kernel, BREAKPOINT_LOOP.replace("range(3)", "range(1)")) as s:  # the lock was released
        assert s.next_prompt() is not None
        s.finish()
    assert s.run.status == "ok"


def test_plain_cell_shows_sessions_of_the_actors_it_spawns(kernel):
    """Test that a crash in an actor a plain kernel cell spawned in debug mode is debugged in that cell."""
    code = (
        "import notebook_actors as na\n"
        "def explode(depth):\n"
        "    raise RuntimeError(f'boom at {depth}')\n"
        "async with na.open_nursery() as n:\n"
        "    p = await n.run_in_actor(explode, depth=3, debug_mode=True)\n"
        "    await p.result()\n"
    )
    with Session(kernel, code) as s:
        assert "explode" in s.next_prompt()
        assert s.ask("p depth").strip().splitlines()[0] == "3"
        run = s.finish()
    assert run.status == "error" and "boom at 3" in run.error["evalue"]


def test_ipython_pdb_still_works(kernel):
    """Test that %pdb on opens IPython's post-mortem for a failing kernel cell, over stdin."""
    assert kernel.run("%pdb on").status == "ok"
    try:
        with Session(kernel, "def sink():\n    local_value = 41 + 1\n    raise ValueError(local_value)\nsink()") as s:
            assert s.next_prompt() is not None
            assert "42" in s.ask("p local_value")
            s.finish(lambda prompt: "q")
    finally:
        assert kernel.run("%pdb off").status == "ok"


def test_interrupt_during_a_nested_post_mortem_ends_every_session_of_the_cell(kernel):
    """Test that an interrupt while a grandchild's post-mortem waits quits it and the parents' ones."""
    with Session(kernel, NESTED_CRASH.replace("outer", "nested_stop")) as s:
        assert "divide" in s.next_prompt()
        kernel.km.interrupt_kernel()
        s.pending = None  # nobody answers: the interrupt ends the sessions
        run = s.finish(lambda prompt: pytest.fail(f"a prompt after the interrupt: {prompt}"))
    assert run.error["ename"] == "KeyboardInterrupt"
    assert "q  # the cell was interrupted" in s.text()
    assert kernel.value("%%actor nested_stop\n'usable'") == "usable"
    assert [p.pid for p in kernel.descendants()] == [kernel.value("%%actor nested_stop\nimport os\nos.getpid()")]
