"""%actor subcommands and help texts (kernel_ext/_commands.py, _magics.py), in a real kernel."""

from __future__ import annotations

import os
import re
import time

import pytest

INTERNAL = re.compile(r"_actor_line_args|_actor_cell_args|%%%actor|kernel_ext|\bargs\b")

#: Hang guard while waiting for a state a test caused.
WAIT = 60.0


def wait_for_file(path) -> None:
    deadline = time.monotonic() + WAIT
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def help_text(kernel, code: str) -> str:
    run = kernel.run(code)
    assert run.status == "ok", run.error
    return re.sub(r"\x1b\[[0-9;]*m", "", run.reply["content"]["payload"][0]["data"]["text/plain"])


def test_line_help_lists_the_commands_without_internal_names(kernel):
    """Test that %actor? shows every subcommand and no internal names."""
    text = help_text(kernel, "%actor?")
    for usage in ("%actor ls", "%actor kill NAME", "%actor push NAME VAR", "%actor debug [NAME]"):
        assert usage in text
    assert not INTERNAL.search(text.split("File:")[0])


def test_cell_help_is_the_cell_magics(kernel):
    """Test that %%actor? shows the cell magic's usage and options."""
    text = help_text(kernel, "%%actor?")
    assert "usage: %%actor" in text and "--group" in text and "--timeout S" in text
    assert not INTERNAL.search(text.split("File:")[0])


def test_plain_actor_prints_the_commands(kernel):
    """Test that %actor alone lists what it can do instead of an argparse error."""
    run = kernel.run("%actor")
    assert run.status == "ok", run.error
    assert "%actor ls" in run.stream("stdout") and "required" not in run.stream()


@pytest.mark.parametrize(
    "line, says",
    [("%actor frobnicate", "frobnicate"), ("%actor kill", "needs an actor name"), ("%actor autoawait x", "autoawait")],
)
def test_bad_commands_say_what_is_wrong(kernel, line, says):
    """Test that a bad %actor line is one UsageError that says what to do."""
    run = kernel.run(line)
    assert run.error["ename"] == "UsageError" and says in run.error["evalue"]


def test_asyncio_in_a_plain_actor_cell_hints_at_the_asyncio_option(kernel):
    """Test that awaiting asyncio code in a trio actor cell adds a hint about --asyncio."""
    run = kernel.run("%%actor plain\nimport asyncio\nawait asyncio.sleep(0)")
    assert run.status == "error"
    assert "%%actor NAME --asyncio" in "\n".join(run.error["traceback"])


def test_actor_namespace_has_trio_and_na(kernel):
    """Test that the README's nested example works as written: trio and na are there."""
    code = "%%actor outer/inner\nawait trio.sleep(0)\n(na.current_actor().name, notebook_actors is na)"
    assert kernel.value(code) == ("inner", True)


def test_stack_names_the_function_an_actor_is_blocked_in(kernel, tmp_path):
    """Test that %actor stack prints the stacks of an actor stuck in blocking code (a
    --bg cell in time.sleep): its pid, the blocked function, and the trio task tree."""
    started, go = tmp_path / "started", tmp_path / "go"
    code = (
        "%%actor stuck --bg\nimport os, time\n"
        "def blocked_right_here():\n"
        f"    open({str(started)!r}, 'w').close()\n"
        f"    while not os.path.exists({str(go)!r}):\n        time.sleep(0.01)\n"
        "blocked_right_here()"
    )
    pid = kernel.value("%%actor stuck\nimport os\nos.getpid()")
    assert kernel.collect(kernel.submit(code)).status == "ok"
    wait_for_file(started)
    run = kernel.run("%actor stack stuck")
    everything = kernel.run("%actor stack --all stuck")
    go.touch()
    assert run.status == "ok", run.error
    text = run.stream("stdout")
    assert f"pid {pid}" in text and "in blocked_right_here" in text
    assert "stuck" in text.splitlines()[0]
    # Only the user's frames: the cell and the function, none of the runtime's or trio's;
    # one line says how much was hidden and how to see it.
    frames = [line for line in text.splitlines() if line.strip().startswith("File ")]
    assert frames and all("<actor-cell stuck" in f for f in frames), frames
    assert "hidden: --all shows them" in text.splitlines()[-1]
    assert everything.status == "ok", everything.error
    full = everything.stream("stdout")
    assert "in blocked_right_here" in full and "hidden" not in full
    assert "notebook_actors" in full and "trio" in full and len(full.splitlines()) > len(text.splitlines())


def test_stack_without_a_name_is_a_usage_error(kernel):
    """Test that %actor stack --all without a name asks for one."""
    run = kernel.run("%actor stack --all")
    assert run.error["ename"] == "UsageError" and "NAME" in run.error["evalue"]


def test_stack_of_an_unknown_actor_is_a_usage_error(kernel):
    """Test that %actor stack of a name that is not running says so in one error."""
    run = kernel.run("%actor stack nobody_here")
    assert run.error["ename"] == "UsageError" and "nobody_here" in run.error["evalue"]
