"""%%actor cells on their actor's cell line (from the kernel's asyncio loop, no trio
hand-off): the same behaviour as through the portal, in a real kernel."""

from __future__ import annotations

import os
import signal
import time

import psutil
from test_debugger import interrupt_a_breakpoint_session
from test_magics import interrupted_once_it_printed, wait_for_file

#: Hang guard while waiting for an actor's line to open (not a timing assertion).
WAIT = 60.0
HANDLES = "__import__('notebook_actors.kernel_ext._session', fromlist=['_']).current().actors.handles"


def sent(kernel, name: str) -> int:
    """Cells the kernel sent on ``name``'s cell line (-1: no line open)."""
    return kernel.value(f"_l = {HANDLES}[{name!r}].line\n-1 if _l is None or _l.closed else _l.sent")


def on_line(kernel, name: str) -> int:
    """Run cells in ``name`` until its line is open; the cells sent on it so far."""
    deadline = time.monotonic() + WAIT
    while True:
        assert kernel.value(f"%%actor {name}\n'ready'") == "ready"
        count = sent(kernel, name)
        if count > 0:
            return count
        assert time.monotonic() < deadline, f"actor {name!r} never got a cell line"


def test_cells_on_the_line_behave_as_through_the_portal(kernel, tmp_path):
    """Test that a running actor's cells go on its line, with values, output, display,
    errors, awaits and prompts as before; the first cell of a new actor does not."""
    assert kernel.value("%%actor lined\nx = 20\nx") == 20
    before = on_line(kernel, "lined")
    assert kernel.value("%%actor lined\nx + 1") == 21
    run = kernel.run("%%actor lined\nprint('out'); import sys; print('err', file=sys.stderr)\ndisplay({'a': 1})\nx * 2")
    assert run.status == "ok"
    assert run.stream("stdout") == "out\n" and run.stream("stderr") == "err\n"
    assert run.displays[0]["text/plain"] == "{'a': 1}" and run.result["text/plain"] == "40"
    run = kernel.run("%%actor lined\ny = 0\n1 / y")
    assert run.error["ename"] == "ZeroDivisionError"
    assert any("1 / y" in line for line in run.error["traceback"])
    msg_id = kernel.submit("%%actor lined\nanswer = input('name? ')\nprint('hi', answer)", allow_stdin=True)
    assert kernel.answer_prompt("ann")["prompt"] == "name? "
    assert kernel.collect(msg_id).stream("stdout") == "hi ann\n"
    assert kernel.value("%%actor lined\nanswer") == "ann"
    assert sent(kernel, "lined") == before + 5  # every cell above went on the line
    # several actors at once, and code that may await: the portal, as before
    run = kernel.run("%%actor lined other\n3")
    assert run.status == "ok" and "[lined] Out:" in run.stream("stdout"), run.error
    assert kernel.value("%%actor lined\nimport trio\nawait trio.sleep(0)\nx + 2") == 22
    assert sent(kernel, "lined") == before + 5


def test_lots_of_output_after_the_answer_is_all_shown_in_order(kernel):
    """Test that a line cell waits for the end of its output before it returns."""
    on_line(kernel, "chatty")
    run = kernel.run("%%actor chatty\nfor i in range(3000):\n    print(i)")
    assert run.stream("stdout") == "".join(f"{i}\n" for i in range(3000))


def test_interrupt_stops_a_busy_cpu_loop_on_the_line(kernel, tmp_path):
    """Test that interrupting a CPU-bound line cell ends it (cancel, then SIGINT) and the
    actor's next cells go on its line again."""
    before = on_line(kernel, "spinner")
    pid = kernel.value("%%actor spinner\nimport os\nos.getpid()")
    spinning = tmp_path / "spinning"
    msg_id = kernel.submit(f"%%actor spinner\nopen({str(spinning)!r}, 'w').close()\nwhile True:\n    pass")
    wait_for_file(str(spinning))
    kernel.km.interrupt_kernel()
    run = kernel.collect(msg_id)
    assert run.error["ename"] == "KeyboardInterrupt"
    assert kernel.value("%%actor spinner\nimport os\nos.getpid()") == pid
    assert sent(kernel, "spinner") == before + 3


def test_interrupt_stops_a_blocking_call_on_the_line(kernel):
    """Test that an interrupt ends a line cell blocked in a sleep (the actor does not
    see the cancel: SIGINT ends it), with its output so far; the actor lives on."""
    before = on_line(kernel, "sleeper")
    run = interrupted_once_it_printed(
        kernel, "%%actor sleeper\nimport time\nprint('sleeping', flush=True)\ntime.sleep(60)"
    )
    assert run.error["ename"] == "KeyboardInterrupt"
    assert kernel.value("%%actor sleeper\n1 + 1") == 2
    assert sent(kernel, "sleeper") == before + 2


def test_an_actor_killed_during_a_line_cell_says_so_and_comes_back(kernel, tmp_path):
    """Test that kill -9 of an actor whose cell runs on its line fails the cell with
    ActorGone, and that the next cell spawns it anew (and, later, a new line)."""
    on_line(kernel, "victim")
    pid = kernel.value("%%actor victim\nimport os\nos.getpid()")
    started = tmp_path / "started"
    msg_id = kernel.submit(f"%%actor victim\nimport time\nopen({str(started)!r}, 'w').close()\ntime.sleep(60)")
    wait_for_file(str(started))
    os.kill(pid, signal.SIGKILL)
    run = kernel.collect(msg_id)
    assert run.error["ename"] == "ActorGone", run.error
    assert "victim" in run.error["evalue"]
    new_pid = kernel.value("%%actor victim\nimport os\nos.getpid()")
    assert new_pid != pid and psutil.pid_exists(new_pid)
    on_line(kernel, "victim")


def test_a_killed_idle_actor_is_respawned_by_its_next_cell(kernel):
    """Test that an actor killed between cells (its line then ends) is spawned anew by
    the next cell instead of failing it, and its line's socket directory removed."""
    on_line(kernel, "idle")
    pid = kernel.value("%%actor idle\nimport os\nos.getpid()")
    where = os.path.dirname(kernel.value(f"{HANDLES}['idle'].line_address[0]"))
    assert os.path.isdir(where)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + WAIT
    while sent(kernel, "idle") != -1:  # the kernel's loop reads the end of the line
        assert time.monotonic() < deadline, "the line of a dead actor stayed open"
        time.sleep(0.01)
    new_pid = kernel.value("%%actor idle\nimport os\nos.getpid()")
    assert new_pid != pid
    assert not os.path.exists(where)  # the dead actor's socket directory is gone with it


def test_a_cell_that_awaits_a_breakpoint_takes_the_portal_and_quits_as_before(kernel):
    """Test that a cell awaiting na.breakpoint() in an actor with a line runs as an RPC
    call (the debugger's `q` cancels that call): interrupting its session ends the
    session and the cell; the actor lives on and its next plain cell takes the line."""
    before = on_line(kernel, "stopper")
    interrupt_a_breakpoint_session(kernel, "stopper")
    assert sent(kernel, "stopper") == before + 1


def test_system_exit_in_a_cell_fails_the_cell_and_the_actor_lives_on(kernel):
    """Test that `raise SystemExit` (or exit()) in a cell fails that cell, as in IPython,
    on the portal (an actor's first cell) and on the line alike; the actor stays."""
    run = kernel.run("%%actor quitter\nraise SystemExit(3)")
    assert run.error["ename"] == "SystemExit" and run.error["evalue"].endswith(": 3"), run.error
    before = on_line(kernel, "quitter")
    pid = kernel.value("%%actor quitter\nimport os\nos.getpid()")
    run = kernel.run("%%actor quitter\nraise SystemExit(4)")
    assert run.error["ename"] == "SystemExit" and run.error["evalue"].endswith(": 4"), run.error
    assert kernel.value("%%actor quitter\nimport os\nos.getpid()") == pid
    assert sent(kernel, "quitter") == before + 3


def test_an_asyncio_actor_serves_its_line_too(kernel):
    """Test that an actor spawned with --asyncio (trio a guest on asyncio there) gets a
    line and runs its cells on it."""
    assert kernel.value("%%actor aio --asyncio\nimport sniffio\nz = 5\nz") == 5
    before = on_line(kernel, "aio")
    assert kernel.value("%%actor aio\nimport notebook_actors as na\n(z, na.current_actor().is_infected_aio())") == (
        5,
        True,
    )
    assert sent(kernel, "aio") == before + 1
