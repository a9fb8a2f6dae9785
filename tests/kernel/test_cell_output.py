"""An actor's cell output and prompts (kernel_ext/_cell_output.py), in a real kernel."""

from __future__ import annotations

import time

#: Hang guard (not a timing assertion).
WAIT = 60.0


def test_blocking_codes_output_arrives_while_the_cell_still_blocks(kernel, tmp_path, record_property):
    """Test that print() in a cell that blocks the actor's trio loop (time.sleep) reaches
    the notebook before the cell can end: the cell waits, without any trio checkpoint,
    for a file that the test creates only after the output arrived."""
    go = tmp_path / "go"
    code = (
        "%%actor blocker\nimport os, time\n"
        "for i in range(3):\n    print('tick', i, time.time(), flush=True)\n    time.sleep(0.05)\n"
        f"while not os.path.exists({str(go)!r}):\n    time.sleep(0.01)\n"
        "print('done')"
    )
    msg_id = kernel.submit(code)
    early = kernel.collect(msg_id, until=lambda m: m["msg_type"] == "stream" and "tick 2" in m["content"]["text"])
    arrived = time.time()
    go.touch()
    rest = kernel.collect(msg_id)
    assert rest.status == "ok", rest.error
    assert "tick 0" in early.stream("stdout") and "done" not in early.stream("stdout")
    assert "done" in rest.stream("stdout")
    printed_at = float(early.stream("stdout").split("tick 2 ")[1].split()[0])
    record_property("blocking_output_latency_s", round(arrived - printed_at, 4))


def test_carriage_return_progress_lines_pass_through_live(kernel, tmp_path):
    """Test that a \\r progress bar (tqdm's text bar) reaches the notebook unchanged, in
    several messages while the cell blocks, so the frontend redraws the line in place."""
    go = tmp_path / "go"
    code = (
        "%%actor progress\nimport os, sys, time\n"
        "sys.stderr.write('\\r 50%')\n"
        f"while not os.path.exists({str(go)!r}):\n    time.sleep(0.01)\n"
        "sys.stderr.write('\\r100%\\n')"
    )
    msg_id = kernel.submit(code)
    first = kernel.collect(msg_id, until=lambda m: m["msg_type"] == "stream")
    assert first.messages[-1]["content"]["text"] == "\r 50%"
    go.touch()
    rest = kernel.collect(msg_id)
    assert rest.status == "ok", rest.error
    assert first.stream("stderr") + rest.stream("stderr") == "\r 50%\r100%\n"


def test_tqdm_text_bar_updates_in_place(kernel):
    """Test that tqdm's text bar writes \\r updates (not a new line per step)."""
    run = kernel.run("%%actor progress\nfrom tqdm import tqdm\nfor _ in tqdm(range(3), mininterval=0):\n    pass")
    assert run.status == "ok", run.error
    text = run.stream("stderr")
    assert text.count("\r") >= 3 and text.count("\n") <= 1


def test_output_and_displays_keep_their_order(kernel):
    """Test that text and displays from blocking code arrive in the order they were made."""
    code = (
        "%%actor orderly\nimport time\n"
        "for i in range(3):\n    print('text', i)\n    display({'text/plain': f'shown {i}'}, raw=True)\n"
        "    time.sleep(0.01)"
    )
    run = kernel.run(code)
    assert run.status == "ok", run.error
    seen = [
        m["content"]["text"].strip() if m["msg_type"] == "stream" else m["content"]["data"]["text/plain"]
        for m in run.outputs
    ]
    assert seen == ["text 0", "shown 0", "text 1", "shown 1", "text 2", "shown 2"]


def test_input_prompts_in_the_notebook(kernel):
    """Test that input() and getpass() in an actor cell send input_request on the
    kernel's stdin channel and get the user's answers."""
    code = "%%actor asker\nimport getpass\nname = input('name? ')\nsecret = getpass.getpass('secret? ')\n(name, secret)"
    msg_id = kernel.submit(code, allow_stdin=True)
    first = kernel.answer_prompt("ada")
    second = kernel.answer_prompt("hunter2")
    run = kernel.collect(msg_id)
    assert run.status == "ok", run.error
    assert first == {"prompt": "name? ", "password": False}
    assert second == {"prompt": "secret? ", "password": True}
    assert run.result["text/plain"] == "('ada', 'hunter2')"


def test_input_without_stdin_is_a_clear_error(kernel):
    """Test that input() from a frontend that cannot answer says so; the actor lives on."""
    run = kernel.run("%%actor asker\ninput('name? ')")
    assert run.status == "error"
    assert run.error["ename"] == "StdinNotAvailable"
    assert "allow_stdin" in run.error["evalue"]
    assert kernel.value("%%actor asker\n'alive'") == "alive"
