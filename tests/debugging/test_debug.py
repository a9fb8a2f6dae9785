"""The routed pdb++ REPL, driven in a real terminal (a pty) with pexpect.

Each test runs one of our scripts in ``examples/debugging/``, answers its prompts and
checks what the root's terminal shows: the actor's name in the prompt, the frame, the
values. The autouse fixture in ``tests/conftest.py`` checks that no process remains.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest
import trio

import notebook_actors as na
from notebook_actors.testing import private_registry_addr

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "debugging"


#: pdb++'s own prompt, as tractor shows it (a regex); who is in the REPL is on a line above.
PROMPT = r"\(Pdb\+\+\) "


def attached(name: str, crashed: bool = False) -> str:
    """The line naming actor ``name`` as the one in the REPL (a regex)."""
    what = "Attaching to pdb in crashed actor" if crashed else "Attaching pdb to actor"
    return rf"{what}: \('{name}', '\w+'\)"


@pytest.fixture
def spawn():
    """Start a script in a pty (``examples/debugging/`` first, then this folder)."""
    children: list[pexpect.spawn] = []

    def start(script: str, *args: str, color: bool = False) -> pexpect.spawn:
        path = EXAMPLES / script
        if not path.exists():
            path = Path(__file__).parent / script
        env = {**os.environ, "NO_COLOR": "1", "TERM": "dumb", "PYTHONUNBUFFERED": "1"}
        env["NOTEBOOK_ACTORS_REGISTRY"] = private_registry_addr()  # alone on the host
        if color:
            env["TERM"] = "xterm-256color"
            del env["NO_COLOR"]
        env.pop("PDBPP_HIJACK_PDB", None)
        child = pexpect.spawn(
            sys.executable,
            [str(path), *args],
            cwd=str(REPO),
            env=env,
            encoding="utf-8",
            timeout=30,
            dimensions=(50, 200),
        )
        child.delaybeforesend = None  # pexpect sleeps 50 ms before each send by default
        child.logfile_read = io.StringIO()  # the whole transcript, for assertions
        children.append(child)
        return child

    yield start
    for child in children:
        if child.isalive():
            child.terminate(force=True)
        child.close()


def send(child: pexpect.spawn, command: str) -> None:
    """Wait for the prompt, then type ``command``."""
    child.expect(PROMPT)
    child.sendline(command)


def ask(child: pexpect.spawn, command: str, answer: str) -> None:
    """Type ``command`` at the prompt, then wait for ``answer`` (a regex)."""
    send(child, command)
    child.expect(answer)


def finish(child: pexpect.spawn) -> tuple[int | None, str]:
    """Wait for the script to end; return its exit status and its last output."""
    child.expect(pexpect.EOF)
    output = child.before
    child.close()
    return child.exitstatus, output


def finish_ok(child: pexpect.spawn) -> str:
    """Wait for the script to end, check it exited 0 and return its last output."""
    status, output = finish(child)
    assert status == 0, output
    return output


def test_breakpoint_in_child(spawn):
    """Test that a child's breakpoint opens at the caller's frame on the root's terminal,
    shows its values and source, and that `c` resumes it."""
    child = spawn("subactor_breakpoint.py")
    child.expect(attached("compute"))
    child.expect(r"subactor_breakpoint\.py\(14\)compute\(\)")
    ask(child, "p answer", "42")
    ask(child, "ll", r"answer = 6 \* 7")
    ask(child, "where", r"compute\(\)")
    ask(
        child,
        "pp {'answer': answer, 'halves': [answer / 2] * 2}",
        r"\{'answer': 42, 'halves': \[21\.0, 21\.0\]\}",
    )
    send(child, "interact")  # through the session, not the child's stdio
    child.expect(">>> ")
    child.sendline("answer + 1")
    child.expect(r"\r\n43\r\n>>> ")
    child.sendline("exit()")
    ask(child, "c", "result: 42")
    finish_ok(child)
    assert "\x1b[" not in child.logfile_read.getvalue()  # no sticky screen clearing, no colours


def test_ps_shows_who_holds_the_repl(spawn):
    """Test that `python -m notebook_actors ps` in another terminal shows the actor
    holding the tree's REPL (the lock publishes itself; no notebook involved)."""
    child = spawn("subactor_breakpoint.py")
    child.expect(attached("compute"))
    child.expect(PROMPT)
    registry = child.env["NOTEBOOK_ACTORS_REGISTRY"]
    ps = subprocess.run(
        [sys.executable, "-m", "notebook_actors", "ps", "--registry", registry],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ps.returncode == 0, ps.stderr
    assert re.search(r"debugger: held by compute\.\w+, waiting: none", ps.stdout), ps.stdout
    child.sendline("c")
    child.expect("result: 42")
    finish_ok(child)


def test_colours_follow_the_root_terminal(spawn):
    """Test that a routed session is coloured when the root's terminal supports it."""
    child = spawn("subactor_breakpoint.py", color=True)
    send(child, "ll")
    child.expect(r"\x1b\[[\d;]+m")  # pygments' highlighting of the child's source
    send(child, "c")
    finish_ok(child)


def test_breakpoint_forever_reenters_until_quit(spawn):
    """Test that a breakpoint in a loop re-enters the REPL on every turn and that `q`
    cancels the child's task cleanly (its caller sees ContextCancelled naming it)."""
    child = spawn("subactor_bp_forever.py")
    for turn in (1, 2, 3):
        ask(child, "p turn", rf"\r\n{turn}\r\n")
        send(child, "c" if turn < 3 else "q")
    child.expect("cancelled from the debugger: canceller=breakpoint_forever")
    output = finish_ok(child)
    assert "(Pdb++" not in output  # no post-mortem for a quit


def test_error_in_child_opens_post_mortems_up_to_the_root(spawn):
    """Test that a crash in a child opens its post-mortem at the crashing frame, then
    the root's post-mortem for the boxed error, then the error propagates."""
    child = spawn("subactor_error.py")
    child.expect(attached("divider", crashed=True))
    child.expect("ZeroDivisionError: division by zero")
    child.expect(r"-> return numerator / denominator")
    ask(child, "p denominator, numerator", r"\(0, 10\)")
    ask(child, "c", attached("root", crashed=True))
    child.expect(r"notebook_actors\._exceptions\.RemoteActorError: \('divider', '\w+'\) raised ZeroDivisionError")
    child.expect(r"Remote traceback:.*\| ZeroDivisionError: division by zero")  # ends in the original line
    child.expect(r"subactor_error\.py\(\d+\)main\(\)")
    send(child, "c")
    status, output = finish(child)
    assert status == 1
    assert "raised ZeroDivisionError" in output


def test_no_repl_without_debug_mode(spawn):
    """Test that without debug mode a crash propagates and no REPL opens; the root's
    traceback ends in tractor's first line form for the boxed error, then the remote
    traceback ending in the original line."""
    child = spawn("subactor_error.py", "--no-debug")
    status, output = finish(child)
    assert status == 1
    assert re.search(
        r"notebook_actors\._exceptions\.RemoteActorError: \('divider', '\w+'\) raised ZeroDivisionError", output
    )
    assert re.search(r"Remote traceback:.*\| ZeroDivisionError: division by zero", output, re.S)
    assert "(Pdb++" not in output and "post-mortem" not in output


def test_errors_in_several_children_queue_on_the_lock(spawn):
    """Test that two crashing children take turns: the second waits visibly until the
    first one's REPL ends, then the root shows the group of both errors."""
    child = spawn("multi_subactors_error.py")
    child.expect(r"REPL held by (\w+)\[\w+\]; waiting: (\w+)\[\w+\]")
    holder, waiter = child.match.group(1), child.match.group(2)
    assert {holder, waiter} == {"name_error", "value_error"}
    ask(child, "c", attached(waiter, crashed=True))
    error = "NameError: name 'no_such_name'" if waiter == "name_error" else "ValueError: bad value 13"
    child.expect(re.escape(error))
    ask(child, "c", attached("root", crashed=True))
    child.expect(r"MultiError: 2 actors failed")
    child.expect(PROMPT)
    assert "raised NameError" in child.before and "raised ValueError" in child.before
    # each member with its remote traceback, ending in the original line
    assert re.search(r"Remote traceback:.*\| NameError: name 'no_such_name' is not defined", child.before, re.S)
    assert re.search(r"Remote traceback:.*\| ValueError: bad value 13", child.before, re.S)
    child.sendline("c")
    status, _ = finish(child)
    assert status == 1


def test_error_three_levels_deep(spawn):
    """Test that a crash in a grandchild is debugged through its parent's relay, then
    each level up shows its own post-mortem: crasher, spawner, root."""
    child = spawn("three_level_error.py")
    child.expect(attached("crasher", crashed=True))
    child.expect(r"RuntimeError: crash at depth 3 \(deep\)")
    ask(child, "p secret", "'deep'")
    ask(child, "c", attached("spawner", crashed=True))
    child.expect(r"\('crasher', '\w+'\) raised RuntimeError")
    child.expect(r"three_level_error\.py\(\d+\)spawner\(\)")
    ask(child, "c", attached("root", crashed=True))
    child.expect(r"relayed \('crasher', '\w+'\) -> \('spawner', '\w+'\)")
    send(child, "c")
    status, output = finish(child)
    assert status == 1
    assert "crash at depth 3" in output


def test_multi_daemon_subactors(spawn):
    """Test that a streaming daemon re-entering its breakpoint and a crashing daemon
    share the one REPL (the crash waits its turn), and that the tree ends after the
    root's post-mortem."""
    child = spawn("multi_daemon_subactors.py")
    transcript = child.logfile_read
    send(child, "c")  # the script crashes the other daemon only after this
    seen = ["bp_forever"]
    while child.expect([PROMPT, pexpect.EOF]) == 0:
        names = re.findall(r"Attaching (?:pdb to|to pdb in crashed) actor: \('(\w+)'", child.before)
        if not names:
            continue  # the prompt shown again under a "waiting" notice: answered already
        name = names[-1]
        seen.append(name)
        if name == "bp_forever":
            assert "breakpoint_forever()" in child.before
            if "name_error" not in seen and "waiting: name_error[" not in child.before:
                # the loop could win the REPL again and again before the crash even
                # happens: continue only once the crash waits for the REPL (the root
                # is reading our answer, so it shows the prompt again under the notice)
                child.expect(r"waiting: name_error\[\w+\]\r\n" + PROMPT)
        elif name == "name_error":
            assert "NameError: name 'no_such_name' is not defined" in child.before
        else:
            assert name == "root" and "raised NameError" in child.before
        # the loop may re-enter until the root's cancel reaches it (a loaded machine
        # makes that take a while); a cancel that never lands fails here
        assert len(seen) < 500, f"the tree was never cancelled: {seen[:5]}...\n{transcript.getvalue()[-3000:]}"
        child.sendline("c")
    assert "name_error" in seen and seen[-1] == "root", seen
    child.close()
    assert child.exitstatus == 1


def test_breakpoint_in_context_endpoint_and_in_root(spawn):
    """Test a breakpoint inside a @context endpoint mid-stream (the stream resumes
    after `c`), then one in the root actor itself."""
    child = spawn("context_breakpoint.py")
    child.expect(attached("counter"))
    ask(child, "p i", r"\r\n2\r\n")
    ask(child, "c", r"received: \[0, 1, 2, 3\] counted")
    child.expect(attached("root"))
    ask(child, "p received", r"\[0, 1, 2, 3\]")
    send(child, "c")
    finish_ok(child)


def test_stepping_through_a_child_task(spawn):
    """Test that `next` steps over an await to the next line, `step` enters a
    coroutine, and `c` ends the session with the task resumed."""
    child = spawn("step_through.py")
    child.expect(r"step_through\.py\(17\)stepper\(\)")
    ask(child, "next", r"step_through\.py\(18\)stepper\(\)")
    ask(child, "next", r"step_through\.py\(19\)stepper\(\)")
    ask(child, "step", r"step_through\.py\(10\)double\(\)")
    ask(child, "next", r"-> doubled = x \* 2")
    ask(child, "p x", r"\r\n21\r\n")
    ask(child, "up", r"stepper\(\)")
    ask(child, "p start", r"\r\n20\r\n")
    ask(child, "down", r"double\(\)")
    ask(child, "c", "result: 42")
    finish_ok(child)


def test_child_killed_in_repl_releases_the_lock(spawn):
    """Test that a child killed while it holds the REPL releases the tree's lock: the
    root's own post-mortem for the crash can open."""
    child = spawn("subactor_breakpoint.py")
    ask(child, "import os, signal; os.kill(os.getpid(), signal.SIGKILL)", attached("root", crashed=True))
    child.expect(r"\('compute', '\w+'\)")
    send(child, "c")
    status, _ = finish(child)
    assert status == 1


def test_builtin_breakpoint_in_child(spawn):
    """Test that Python's builtin breakpoint() in a debug-mode child opens the routed
    REPL at the caller's frame."""
    child = spawn("builtin_breakpoint.py")
    child.expect(r"builtin_breakpoint\.py\(10\)sync_work\(\)")
    ask(child, "p total", r"\r\n6\r\n")
    ask(child, "c", "total: 6")
    finish_ok(child)


def test_ctrl_c_while_repl_open_keeps_the_tree(spawn):
    """Test that Ctrl-C while a child's REPL is open is handled by the REPL and does
    not tear the tree down."""
    child = spawn("subactor_breakpoint.py")
    child.expect(PROMPT)
    child.sendintr()
    child.expect("Ctrl-C: the REPL stays open")
    child.sendline("p answer")
    child.expect("42")
    ask(child, "c", "result: 42")
    finish_ok(child)


def test_ctrl_c_without_repl_cancels_the_tree(spawn):
    """Test that Ctrl-C with no REPL open cancels the tree as usual (debug mode on)."""
    child = spawn("sleeping_tree.py")
    child.expect("pong: pong")
    child.sendintr()
    status, output = finish(child)
    assert status != 0
    assert "KeyboardInterrupt" in output
    assert "(Pdb++" not in output


@pytest.mark.parametrize("where", ["child", "root"])
@pytest.mark.parametrize("command", ["n", "s"])
def test_next_and_step_reach_the_next_breakpoint_in_the_same_session(spawn, where, command):
    """Test that `n` or `s` over `await breakpoint()` in a loop stops at the next
    breakpoint in the same session (the actor already holds the REPL: asking for it
    again used to deadlock; `s` must not stop inside the runtime, the import machinery
    or pdb++ itself), with a variable named `n` in the frame, and that `c` ends the
    session and the next turn opens a new one."""
    child = spawn("breakpoint_loop.py", *(["root"] if where == "root" else []))
    name = "root" if where == "root" else "looper"
    child.expect(attached(name))
    # while -> n += 1 -> await breakpoint() -> the next breakpoint (same line) -> while
    for line in ("17", "18", "19", "19", "17"):
        ask(child, command, rf"breakpoint_loop\.py\({line}\)count_up\(\)")
    ask(child, "p n", r"\r\n2\r\n")
    assert child.before.count("Attaching pdb") == 0  # no new session was opened
    send(child, "c")
    child.expect(attached(name))  # the third turn: a new session
    send(child, "c")
    child.expect("counted to 3")
    finish_ok(child)


def test_ctrl_c_interrupts_an_expression_in_a_child(spawn):
    """Test that Ctrl-C while a child's REPL evaluates a never-ending expression
    interrupts it in the child; the session and the tree go on."""
    child = spawn("interrupt_expression.py")
    child.expect(attached("inspector"))
    send(child, "p spin()")
    child.expect("spinning")  # the child runs it now
    child.sendintr()
    child.expect("KeyboardInterrupt")
    ask(child, "p rounds", r"\r\n3\r\n")
    send(child, "c")
    child.expect("resumed after 3 rounds")
    finish_ok(child)


@pytest.mark.parametrize("where", ["inline", "thread"])
def test_pause_from_sync(spawn, where):
    """Test that pause_from_sync() in a plain function of a child opens the routed REPL
    at its caller's frame, in the child's trio thread and in a worker thread."""
    child = spawn("sync_pause.py", where)
    child.expect(attached("adder"))
    child.expect(r"sync_pause\.py\(17\)add_up\(\)")
    ask(child, "p total", r"\r\n6\r\n")
    ask(child, "ll", r"na\.pause_from_sync\(\)")
    send(child, "c")
    child.expect("total: 6")
    finish_ok(child)


def test_every_debugging_example_is_driven_here():
    """Test that each script in examples/debugging/ is driven by a test in this file."""
    source = Path(__file__).read_text()
    scripts = sorted(p.name for p in EXAMPLES.glob("*.py"))
    assert scripts and all(f'spawn("{name}"' in source for name in scripts), scripts


def test_plain_pdb_and_ipython_debugger_are_stdlib():
    """Test that installing the package leaves `import pdb` to the stdlib (pdbpp's
    hijack is opt-in), so IPython's debugger keeps working."""
    env = {k: v for k, v in os.environ.items() if k != "PDBPP_HIJACK_PDB"}
    code = (
        "import io, sys, pdb\n"
        "from IPython.core.debugger import Pdb\n"
        "def f():\n"
        "    x = 41\n"
        "    try:\n"
        "        1 / 0\n"
        "    except ZeroDivisionError:\n"
        "        return sys.exc_info()[2]\n"
        "out = io.StringIO()\n"
        "p = Pdb(stdin=io.StringIO('p x + 1\\nq\\n'), stdout=out)\n"
        "p.reset()\n"
        "p.interaction(None, f())\n"
        "print(pdb.__file__)\n"
        "print('42' in out.getvalue())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    pdb_file, answered = done.stdout.split()
    assert "pdbpp" not in pdb_file and "_pdbpp_path_hack" not in pdb_file
    assert answered == "True"


def test_debug_mode_does_not_import_pdbpp_until_a_repl_opens():
    """Test that debug mode alone does not import pdb++ (idle actors stay light) and
    that it routes the builtin breakpoint() only while the runtime runs."""
    code = (
        "import sys, trio, notebook_actors as na\n"
        "async def main():\n"
        "    async with na.open_root_actor(debug_mode=True, registry_addrs=[('127.0.0.1', 0)]):\n"
        "        print('hooked', sys.breakpointhook.__module__)\n"
        "trio.run(main)\n"
        "print('pdbpp' in sys.modules, sys.breakpointhook is sys.__breakpointhook__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["hooked", "notebook_actors.debug._entry", "False", "True"]


def test_post_mortem_needs_an_exception():
    """Test that post_mortem() outside an except block says what it needs."""
    with pytest.raises(ValueError, match="needs an exception"):
        trio.run(na.post_mortem)


def test_n_s_c_are_commands_although_variables_have_their_names(spawn):
    """Test a child frame with variables `n`, `s` and `c`: expressions on them are
    evaluated (pdb++'s rule: `c[0]` does not continue), the bare names are the commands
    (`n` steps, `s` steps into a call, `c` continues)."""
    child = spawn("shadowed_commands.py")
    child.expect(attached("shadow"))
    child.expect(r"shadowed_commands\.py\(16\)shadowed\(\)")
    ask(child, "p n", r"\r\n1\r\n")
    ask(child, "n+1", r"\r\n2\r\n")  # pdb++: `n + 1` (spaced) is `next`
    ask(child, "s.upper()", r"\r\n'TEXT'\r\n")
    ask(child, "c[0]", r"\r\n3\r\n")
    ask(child, "n", r"shadowed_commands\.py\(17\)shadowed\(\)")
    ask(child, "s", r"shadowed_commands\.py\(9\)helper\(\)")
    ask(child, "n", r"shadowed_commands\.py\(10\)helper\(\)")
    ask(child, "n", r"shadowed_commands\.py\(11\)helper\(\)")
    ask(child, "p doubled", r"\r\n2\r\n")
    send(child, "c")
    child.expect(r"result: text \[3, 4, 2\]")
    finish_ok(child)
