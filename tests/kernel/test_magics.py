"""%%actor cells and the %actor line magic, in a real kernel over jupyter_client."""

from __future__ import annotations

import os
import time

import psutil
import pytest

from notebook_actors import testing

#: Hang guard while waiting for a file a cell creates.
WAIT = 60.0


def wait_for_file(path: str) -> None:
    deadline = time.monotonic() + WAIT
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_cell_runs_in_a_persistent_actor_process(kernel):
    """Test that an %%actor cell runs in a child process of the kernel and keeps its namespace."""
    pid = kernel.value("%%actor worker\nimport os\nx = 41\nos.getpid()")
    assert pid != kernel.pid
    assert psutil.Process(pid).ppid() == kernel.pid
    assert kernel.value("%%actor worker\nimport os\n(x + 1, os.getpid())") == (42, pid)
    assert "x" not in kernel.value("sorted(globals())")  # the kernel's namespace is untouched


def test_top_level_await_runs_in_the_actors_trio_loop(kernel):
    """Test that a cell can await trio code and spawn actors of its own from the actor."""
    code = (
        "%%actor spawner\n"
        "import trio, os, notebook_actors as na\n"
        "def square(x):\n    return x * x\n"
        "async with na.open_nursery() as n:\n"
        "    p = await n.run_in_actor(square, x=9)\n"
        "await trio.sleep(0)\n"
        "(await p.result(), na.current_actor().name)"
    )
    assert kernel.value(code) == (81, "spawner")


def test_last_expression_shows_its_rich_repr(kernel):
    """Test that the last expression's _repr_html_ is computed in the actor and shown."""
    run = kernel.run(
        "%%actor rich\nimport os\nclass Box:\n    def _repr_html_(self):\n        return f'<b>{os.getpid()}</b>'\nBox()"
    )
    assert run.status == "ok", run.error
    assert run.result["text/html"].startswith("<b>")
    assert int(run.result["text/html"][3:-4]) != kernel.pid
    assert "Box at" in run.result["text/plain"]


def test_output_arrives_in_order(kernel):
    """Test that print, stderr, warnings, logging and display() appear in the order written."""
    code = (
        "%%actor talker\n"
        "import sys, warnings, logging\n"
        "from IPython.display import display, HTML\n"
        "print('one')\n"
        "print('two', file=sys.stderr)\n"
        "display(HTML('<i>three</i>'))\n"
        "warnings.warn('four')\n"
        "logging.getLogger('nb').warning('five')\n"
        "print('six')\n"
    )
    run = kernel.run(code)
    assert run.status == "ok", run.error
    seen = []
    for m in run.outputs:
        if m["msg_type"] == "stream":
            seen.extend(
                (m["content"]["name"], word)
                for word in ("one", "two", "four", "five", "six")
                if word in m["content"]["text"]
            )
        elif m["msg_type"] == "display_data":
            assert m["content"]["data"]["text/html"] == "<i>three</i>"
            seen.append(("display", "three"))
    assert seen == [
        ("stdout", "one"),
        ("stderr", "two"),
        ("display", "three"),
        ("stderr", "four"),
        ("stderr", "five"),
        ("stdout", "six"),
    ]


def test_output_is_live(kernel, tmp_path):
    """Test that output reaches the cell while the actor still runs it."""
    go = tmp_path / "go"
    msg_id = kernel.submit(
        f"%%actor live\nimport os, trio\nprint('waiting')\n"
        f"while not os.path.exists({str(go)!r}):\n    await trio.sleep(0.01)\nprint('done')"
    )
    first = kernel.collect(msg_id, until=lambda m: m["msg_type"] == "stream")
    assert "waiting" in first.messages[-1]["content"]["text"]
    go.touch()  # the cell cannot finish before this: its first output came live
    rest = kernel.collect(msg_id)
    assert rest.status == "ok"
    assert "done" in rest.stream("stdout")


def test_error_shows_the_cells_lines_and_the_actor_survives(kernel):
    """Test that an exception shows the remote traceback at the cell's line; the actor lives on."""
    pid = kernel.value("%%actor fragile\nimport os\nos.getpid()")
    run = kernel.run("%%actor fragile\ndef divide(a, b):\n    return a / b\n\ndivide(1, 0)")
    assert run.status == "error"
    assert run.error["ename"] == "ZeroDivisionError"
    tb = "\n".join(run.error["traceback"])
    assert "return a / b" in tb and "divide(1, 0)" in tb
    assert "fragile" in tb and "_cell_runtime" not in tb
    assert kernel.value("%%actor fragile\nimport os\nos.getpid()") == pid


def test_syntax_error_is_reported(kernel):
    """Test that a syntax error in an actor cell is shown as such."""
    run = kernel.run("%%actor parser\ndef broken(:\n    pass")
    assert run.status == "error"
    assert run.error["ename"] == "SyntaxError"


def test_nested_path_spawns_a_child_of_the_parent_process(kernel):
    """Test that %%actor parent/child runs in a process whose parent is the parent actor."""
    parent = kernel.value("%%actor boss\nimport os\nos.getpid()")
    child, child_parent = kernel.value("%%actor boss/helper\nimport os\n(os.getpid(), os.getppid())")
    assert child_parent == parent
    assert psutil.Process(child).ppid() == parent
    grandchild = kernel.value("%%actor boss/helper/intern\nimport os\nos.getppid()")
    assert grandchild == child
    rows = kernel.run("%actor ls").result["text/plain"]
    assert "boss/helper/intern" in rows and str(child) in rows


def test_a_notebook_actor_is_born_with_its_own_template(kernel):
    """Test that an actor of the notebook has a fork-server template of its own before
    it spawns anything (so `%%actor a/b` is warm at every level), a child process of
    that actor, and that its child spawns through it."""
    code = "%%actor warmed\nimport os, psutil\n[p.pid for p in psutil.Process().children()]"
    parent = kernel.value("%%actor warmed\nimport os\nos.getpid()")
    templates = [pid for pid in kernel.value(code) if testing.is_fork_server(psutil.Process(pid))]
    assert len(templates) == 1 and psutil.Process(templates[0]).ppid() == parent
    assert kernel.value("%%actor warmed/kid\nimport os\nos.getppid()") == parent


def test_kill_and_restart(kernel):
    """Test that %actor kill stops an actor and its subtree, and restart gives a fresh one."""
    a = kernel.value("%%actor doomed\nimport os\nvalue = 1\nos.getpid()")
    b = kernel.value("%%actor doomed/kid\nimport os\nos.getpid()")
    assert kernel.run("%actor kill doomed").status == "ok"
    for pid in (a, b):
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert "doomed" not in kernel.run("%actor ls").result.get("text/plain", "")
    fresh = kernel.value("%%actor doomed\nimport os\nos.getpid()")
    assert fresh != a
    assert kernel.run("%actor restart doomed").status == "ok"
    run = kernel.run("%%actor doomed\nvalue")
    assert run.error["ename"] == "NameError"


def test_new_option_restarts_with_an_empty_namespace(kernel):
    """Test that --new gives a fresh process and namespace."""
    first = kernel.value("%%actor scratch\nimport os\nkept = 1\nos.getpid()")
    second = kernel.value("%%actor scratch --new\nimport os\n(os.getpid(), 'kept' in globals())")
    assert second[0] != first and second[1] is False


def test_push_and_pull(kernel):
    """Test that %actor push/pull copy encodable values; others get a clear error."""
    kernel.run("numbers = [1, 2, 3]")
    assert kernel.run("%actor push store numbers").status == "ok"
    kernel.run("%%actor store\ntotal = sum(numbers)")
    assert kernel.run("%actor pull store total").status == "ok"
    assert kernel.value("total") == 6
    kernel.run("lock = __import__('threading').Lock()")
    run = kernel.run("%actor push store lock")
    assert run.error["ename"] == "UsageError"
    assert "lock" in run.error["evalue"] and "cannot be sent" in run.error["evalue"]
    run = kernel.run("%actor pull store missing_name")
    assert run.error["ename"] == "UsageError" and "missing_name" in run.error["evalue"]


def test_timeout_option(kernel):
    """Test that --timeout interrupts a cell that runs too long and leaves the actor alive."""
    run = kernel.run("%%actor slow --timeout 0.2\nimport trio\nawait trio.sleep_forever()")
    assert run.error["ename"] == "TimeoutError"
    assert kernel.value("%%actor slow\n'alive'") == "alive"


def test_background_cell_returns_at_once_and_streams_here(kernel, tmp_path):
    """Test that --bg returns before the cell ends and its output still reaches this cell."""
    go = tmp_path / "go"
    msg_id = kernel.submit(
        f"%%actor bg --bg\nimport os, trio\n"
        f"while not os.path.exists({str(go)!r}):\n    await trio.sleep(0.01)\nprint('finished later')"
    )
    run = kernel.collect(msg_id)
    assert run.status == "ok"
    assert "background" in run.result["text/plain"]
    go.touch()
    late = kernel.collect(msg_id, until=lambda m: m["msg_type"] == "stream")
    assert "finished later" in late.messages[-1]["content"]["text"]


def test_interrupt_stops_a_busy_cpu_loop(kernel, tmp_path):
    """Test that interrupting the kernel stops a CPU-bound actor cell; the actors live on."""
    other = kernel.value("%%actor bystander\nimport os\nos.getpid()")
    spinning = tmp_path / "spinning"
    msg_id = kernel.submit(f"%%actor spinner\nopen({str(spinning)!r}, 'w').close()\nwhile True:\n    pass")
    wait_for_file(str(spinning))  # the actor is inside the loop now
    kernel.km.interrupt_kernel()
    run = kernel.collect(msg_id)
    assert run.status == "error"
    assert run.error["ename"] == "KeyboardInterrupt"
    assert kernel.value("%%actor spinner\n'still here'") == "still here"
    assert kernel.value("%%actor bystander\nimport os\nos.getpid()") == other


def interrupted_once_it_printed(kernel, code: str):
    """Run the cell ``code``, interrupt the kernel once the cell has printed, and
    return the cell's run."""
    msg_id = kernel.submit(code)
    kernel.collect(msg_id, until=lambda m: m["msg_type"] == "stream")
    kernel.km.interrupt_kernel()
    return kernel.collect(msg_id)


def test_interrupt_cancels_an_awaiting_cell(kernel):
    """Test that an interrupt cancels a cell waiting in trio, without escalating."""
    run = interrupted_once_it_printed(
        kernel, "%%actor sleeper\nimport trio\nprint('sleeping')\nawait trio.sleep_forever()"
    )
    assert run.error["ename"] == "KeyboardInterrupt"
    assert kernel.value("%%actor sleeper\n1 + 1") == 2


def test_kernel_defined_code_travels_by_value(kernel):
    """Test that functions defined in kernel cells run in actors via every portal call."""
    kernel.run(
        "import notebook_actors as na\n"
        "def triple(x):\n    return 3 * x\n"
        "async def count(n):\n    for i in range(n):\n        yield i\n"
        "@na.context\nasync def echo(ctx, word):\n    await ctx.started(word.upper())\n    return word * 2\n"
    )
    code = (
        "async with na.open_nursery() as n:\n"
        "    p = await n.run_in_actor(triple, x=5)\n"
        "    d = await n.start_actor('helper')\n"
        "    ran = await d.run(triple, x=2)\n"
        "    async with d.open_stream_from(count, n=3) as s:\n"
        "        streamed = [v async for v in s]\n"
        "    async with d.open_context(echo, word='hi') as (ctx, first):\n"
        "        pass\n"
        "    final = await ctx.result()\n"
        "    await d.cancel_actor()\n"
        "(await p.result(), ran, streamed, first, final, na.current_actor().name)"
    )
    assert kernel.value(code) == (15, 6, [0, 1, 2], "HI", "hihi", "kernel")


def test_actor_cell_code_travels_by_value(kernel):
    """Test that a function defined in an actor's cell runs in that actor's own child."""
    code = (
        "%%actor author\n"
        "import os, notebook_actors as na\n"
        "class Point:\n    def __init__(self, x):\n        self.x = x\n"
        "def make(x):\n    return (Point(x).x, os.getppid())\n"
        "async with na.open_nursery() as n:\n"
        "    p = await n.run_in_actor(make, x=7)\n"
        "(await p.result(), os.getpid())"
    )
    (x, child_parent), author = kernel.value(code)
    assert x == 7 and child_parent == author


def test_unshippable_function_gets_a_clear_error(kernel):
    """Test that code that cannot be pickled fails with an error naming it."""
    code = (
        "import threading, notebook_actors as na\n"
        "guard = threading.Lock()\n"
        "def locked():\n    with guard:\n        return 1\n"
        "async with na.open_nursery() as n:\n"
        "    await n.run_in_actor(locked)\n"
    )
    run = kernel.run(code)
    assert run.error["ename"] == "TypeError"
    assert "locked" in run.error["evalue"] and "by value" in run.error["evalue"]


def test_blocking_cell_pauses_the_runtime_and_actors_survive(kernel):
    """Test that a blocking kernel cell only pauses the runtime: the actor still answers."""
    pid = kernel.value("%%actor patient\nimport os\nos.getpid()")
    assert kernel.run("import time\ntime.sleep(0.3)").status == "ok"
    assert kernel.value("%%actor patient\nimport os\nos.getpid()") == pid


def test_help_is_available(kernel):
    """Test that %%actor? shows the options."""
    run = kernel.run("%%actor?")
    assert run.status == "ok"
    text = str(run.reply["content"]["payload"])
    assert "%%actor" in text and "--timeout" in text and "--bg" in text and "parent/child" in text


@pytest.mark.parametrize("line", ["%%actor bad-name\n1", "%%actor\n1"])
def test_bad_lines_say_what_is_wrong(kernel, line):
    """Test that a bad %%actor line is a UsageError, not an internal traceback."""
    run = kernel.run(line)
    assert run.error["ename"] == "UsageError"


def test_asyncio_in_a_plain_cell_gets_a_hint_and_autoawait_switches(kernel):
    """Test that asyncio code in a trio-run cell explains the fix, and autoawait asyncio applies it."""
    run = kernel.run("import asyncio\nawait asyncio.sleep(0)")
    assert run.error["ename"] == "TypeError" and "autoawait asyncio" in run.error["evalue"]
    assert kernel.run("%actor autoawait asyncio").status == "ok"
    try:
        assert kernel.value("await asyncio.sleep(0, result='on asyncio')") == "on asyncio"
        assert kernel.value("%%actor still_trio\n'actor cells still work'") == "actor cells still work"
    finally:
        assert kernel.run("%actor autoawait trio").status == "ok"
    assert kernel.value("import trio\nawait trio.sleep(0)\n'trio again'") == "trio again"


def test_asyncio_and_debug_options(kernel):
    """Test that --asyncio spawns an asyncio-infected actor and --debug one in debug mode."""
    code = (
        "%%actor aio --asyncio\nimport asyncio, notebook_actors as na\n"
        "from notebook_actors import to_asyncio\n"
        "(na.current_actor().is_infected_aio(), await to_asyncio.run_task(asyncio.sleep, delay=0, result=5))"
    )
    assert kernel.value(code) == (True, 5)
    assert kernel.value("%%actor dbg --debug\nimport notebook_actors as na\nna.current_actor().debug_mode") is True


def test_tree_shows_the_live_widget(kernel):
    """Test that %actor tree displays the actor-tree widget."""
    run = kernel.run("%actor tree")
    assert run.status == "ok", run.error
    assert "application/vnd.jupyter.widget-view+json" in run.result


def test_traceback_has_the_editors_line_numbers_and_the_execution_count(kernel):
    """Test that a user error's traceback names <actor-cell NAME [count]>, numbers lines
    as the editor does (the %%actor line is line 1) and shows no frames of ours or trio's."""
    run = kernel.run("%%actor lines\nx = 1\ndef f():\n    raise ValueError('boom')\nf()")
    count = run.reply["content"]["execution_count"]
    tb = "\n".join(run.error["traceback"])
    assert f'File "<actor-cell lines [{count}]>", line 5' in tb
    assert f'File "<actor-cell lines [{count}]>", line 4, in f' in tb
    assert "raise ValueError('boom')" in tb
    assert "trio" not in tb and "kernel_ext" not in tb and "notebook_actors/" not in tb


def _touch_and_wait(tmp_path, n: int) -> str:
    """Cell code: create this actor's file, then wait (in trio) until all n exist."""
    return (
        "import os\n"
        f"d = {str(tmp_path)!r}\n"
        "open(os.path.join(d, na.current_actor().name), 'w').close()\n"
        f"while len(os.listdir(d)) < {n}:\n    await trio.sleep(0.01)\n"
    )


def test_a_cell_runs_in_several_actors_at_once(kernel, tmp_path):
    """Test that %%actor w1 w2 w3 spawns all three and runs the cell in them concurrently
    (each waits for the others), with labelled output and a {path: value} result."""
    code = (
        "%%actor w1 w2 w3\n"
        + _touch_and_wait(tmp_path, 3)
        + "print('hello from', na.current_actor().name)\nos.getpid()"
    )
    run = kernel.run(code)
    assert run.status == "ok", run.error
    out = run.stream("stdout")
    for name in ("w1", "w2", "w3"):
        assert f"[{name}] hello from {name}\n" in out and f"[{name}] Out:" in out
    values = kernel.value("dict(_)")
    assert sorted(values) == ["w1", "w2", "w3"] and len(set(values.values())) == 3
    assert kernel.value("%%actor w2\nos.getpid()") == values["w2"]


def test_output_grouped_by_actor(kernel, tmp_path):
    """Test that --group actor shows each actor's output together, in the order named."""
    code = (
        "%%actor g1 g2 --group actor\n"
        "print('first', na.current_actor().name)\n"
        + _touch_and_wait(tmp_path, 2)
        + "print('second', na.current_actor().name)"
    )
    run = kernel.run(code)
    assert run.status == "ok", run.error
    lines = [line for line in run.stream("stdout").splitlines() if "first" in line or "second" in line]
    assert lines == ["[g1] first g1", "[g1] second g1", "[g2] first g2", "[g2] second g2"]


def test_an_error_in_one_actor_does_not_hide_the_others(kernel):
    """Test that a failing actor's error is shown with its name, the others' values too."""
    run = kernel.run("%%actor ok1 bad1\nif na.current_actor().name == 'bad1':\n    1 / 0\n'fine'")
    assert run.status == "error"
    assert run.error["ename"] == "CellsFailed" and "bad1 (ZeroDivisionError)" in run.error["evalue"]
    assert "[bad1] ZeroDivisionError in actor 'bad1'" in run.stream("stderr")
    assert "[ok1] Out:" in run.stream("stdout")
    assert {"text/plain": "'fine'"} in run.displays


def test_a_glob_runs_the_cell_in_the_matching_actors(kernel):
    """Test that %%actor 'team/*' runs in every existing actor under team."""
    kernel.run("%%actor team/a\n1")
    kernel.run("%%actor team/b\n1")
    run = kernel.run("%%actor 'team/*'\nna.current_actor().name")
    assert run.status == "ok", run.error
    assert kernel.value("dict(_)") == {"team/a": "a", "team/b": "b"}


def test_interrupt_cancels_every_actor_of_the_cell(kernel, tmp_path):
    """Test that interrupting a several-actor cell ends it in all of them; they live on."""
    msg_id = kernel.submit("%%actor s1 s2\n" + _touch_and_wait(tmp_path, 2) + "await trio.sleep_forever()")
    deadline = time.monotonic() + WAIT
    while len(os.listdir(tmp_path)) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    kernel.km.interrupt_kernel()
    run = kernel.collect(msg_id)
    assert run.status == "error" and "s1 (KeyboardInterrupt)" in run.error["evalue"]
    assert "s2 (KeyboardInterrupt)" in run.error["evalue"]
    assert kernel.run("%%actor s1 s2\n'back'").status == "ok"
    assert kernel.value("dict(_)") == {"s1": "back", "s2": "back"}
