"""The terminal front end on its own: what it shows around a waiting prompt.

The notice "REPL held by A; waiting: B" can arrive between a session's prompt and the
moment the root starts reading its answer (the relay reads in a task it starts after
showing the prompt); the prompt must be shown again under it all the same, or the user
(and the pexpect tests) sees a notice and no prompt.
"""

from __future__ import annotations

import os

import trio

from notebook_actors.debug._frontend import TerminalFrontEnd


def test_a_notice_reshows_a_prompt_nobody_reads_yet(capsys):
    """Test that a notice between a prompt and its readline shows the prompt again,
    and that once the answer is read a notice shows no stale prompt."""
    read_end, write_end = os.pipe()
    try:
        front = TerminalFrontEnd(fd=read_end)
        front.write("> frame()\n(Pdb++) ")
        front.notice("REPL held by a[1]; waiting: b[2]")  # no readline has started yet
        assert capsys.readouterr().out.endswith("waiting: b[2]\n(Pdb++) ")
        os.write(write_end, b"c\n")
        assert trio.run(front.readline) == "c\n"
        front.notice("REPL held by a[1]; waiting: b[2], c[3]")
        assert capsys.readouterr().out.endswith("waiting: b[2], c[3]\n")
    finally:
        os.close(read_end)
        os.close(write_end)


def test_a_notice_after_the_session_ended_shows_no_prompt(capsys):
    """Test that the prompt of a session that ended unanswered is not shown again."""
    front = TerminalFrontEnd(fd=0)
    front.write("(Pdb++) ")
    front.session_ended(("a", "1"))
    front.notice("REPL held by b[2]; waiting: c[3]")
    assert capsys.readouterr().out.endswith("waiting: c[3]\n")
