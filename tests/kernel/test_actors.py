"""The kernel's record of its notebook actors (kernel_ext/_actors.py), in a real kernel."""

from __future__ import annotations

import os
import signal
import time

import psutil

#: Hang guard while waiting for a state a test caused.
WAIT = 60.0


def wait_for_file(path) -> None:
    deadline = time.monotonic() + WAIT
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def states(kernel) -> dict[str, str]:
    rows = kernel.run("%actor ls").result["text/plain"].splitlines()[1:]
    return {row.split()[0]: row.split()[-1] for row in rows}


def test_ls_uses_the_widgets_state_words(kernel, tmp_path):
    """Test that %actor ls says idle / running / crashed(SIGKILL) like the tree widget."""
    pid = kernel.value("%%actor quiet\nimport os\nos.getpid()")
    assert states(kernel)["quiet"] == "idle"
    started, go = tmp_path / "started", tmp_path / "go"
    bg = kernel.submit(
        f"%%actor quiet --bg\nimport os\nopen({str(started)!r}, 'w').close()\n"
        f"while not os.path.exists({str(go)!r}):\n    await trio.sleep(0.01)"
    )
    kernel.collect(bg)
    wait_for_file(started)
    assert states(kernel)["quiet"] == "running"
    go.touch()
    os.kill(pid, signal.SIGKILL)
    psutil.Process(pid).wait(WAIT) if psutil.pid_exists(pid) else None
    deadline = time.monotonic() + WAIT
    while states(kernel)["quiet"] != "crashed(SIGKILL)":
        assert time.monotonic() < deadline, states(kernel)
        time.sleep(0.05)


def test_a_kill_under_a_running_cell_ends_it_in_one_line(kernel, tmp_path):
    """Test that SIGKILL of the actor running a cell ends that cell with one line naming it."""
    started = tmp_path / "started"
    pid = kernel.value("%%actor victim\nimport os\nos.getpid()")
    msg_id = kernel.submit(f"%%actor victim\nopen({str(started)!r}, 'w').close()\nawait trio.sleep_forever()")
    wait_for_file(started)
    os.kill(pid, signal.SIGKILL)
    run = kernel.collect(msg_id)
    assert run.status == "error"
    assert run.error["traceback"] == ["actor 'victim' was killed (SIGKILL) while running this cell"]
    assert kernel.value("%%actor victim\n'respawned'") == "respawned"


def test_a_background_cell_whose_actor_is_stopped_says_so(kernel, tmp_path):
    """Test that a --bg cell ended by `%actor kill` says so in its own cell."""
    started = tmp_path / "started"
    bg = kernel.submit(f"%%actor doomed_bg --bg\nopen({str(started)!r}, 'w').close()\nawait trio.sleep_forever()")
    assert kernel.collect(bg).status == "ok"
    wait_for_file(started)
    assert kernel.run("%actor kill doomed_bg").status == "ok"
    late = kernel.collect(bg, until=lambda m: m["msg_type"] == "stream")
    text = late.messages[-1]["content"]["text"]
    assert "actor 'doomed_bg' was stopped by you" in text and len(text.strip().splitlines()) == 1


def test_globs_name_existing_actors(kernel):
    """Test that %actor kill 'pool/*' stops the matching actors only, and a glob that
    matches nothing is a clear error."""
    kernel.run("%%actor pool\n1")
    kernel.run("%%actor pool/a\n1")
    kernel.run("%%actor pool/b\n1")
    assert kernel.run("%actor kill 'pool/*'").status == "ok"
    assert set(states(kernel)) == {"pool"}
    run = kernel.run("%actor kill 'nothing/*'")
    assert run.error["ename"] == "UsageError" and "nothing/*" in run.error["evalue"]


def test_ps_shows_each_actor_by_its_notebook_path(kernel):
    """Test that an actor's process title (ps, htop) is its notebook path, nested too."""
    outer = kernel.value("%%actor titled\nimport os\nos.getpid()")
    inner = kernel.value("%%actor titled/inner\nimport os\nos.getpid()")
    assert " ".join(psutil.Process(outer).cmdline()).strip() == "notebook_actors actor titled"
    assert " ".join(psutil.Process(inner).cmdline()).strip() == "notebook_actors actor titled/inner"
