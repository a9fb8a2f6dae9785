"""Tests of the command line (notebook_actors.__main__): ``ps`` against a live program."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

from notebook_actors.testing import descendants, kill_all, private_registry_addr, start_script

PROGRAM = """
import sys, trio, notebook_actors as na

async def main(reg):
    async with na.open_nursery(registry_addrs=[reg]) as n:
        await n.start_actor("alpha")
        beta = await n.start_actor("beta")
        async with na.wait_for_actor("alpha"), na.wait_for_actor("beta"):
            print("ready", flush=True)
        await trio.sleep_forever()

if __name__ == "__main__":
    try:
        trio.run(main, sys.argv[1])
    except KeyboardInterrupt:
        pass
"""


def run_ps(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "notebook_actors", "ps", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_ps_prints_a_running_programs_tree(tmp_path):
    """Test that ``ps`` prints a live program's actors as a tree (text and JSON)."""
    reg = private_registry_addr()
    script = tmp_path / "program.py"
    script.write_text(PROGRAM)
    proc = start_script(str(script), reg)
    try:
        assert proc.stdout.readline().strip() == "ready"
        text = run_ps("--registry", reg)
        assert text.returncode == 0, text.stderr
        lines = text.stdout.splitlines()
        assert lines[0].startswith(f"root [{proc.pid}] ")
        assert [line.split(" [")[0] for line in lines[1:]] == ["├─ alpha", "└─ beta"]
        assert all(" idle " in line for line in lines[1:])
        tree = json.loads(run_ps("--registry", reg, "--json").stdout)
        names = {n["name"]: n for n in tree["nodes"].values()}
        assert set(names) == {"root", "alpha", "beta"}
        assert names["alpha"]["parent"] == names["root"]["key"]
    finally:
        pids = [p.pid for p in descendants(proc.pid)]
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            kill_all([*pids, proc.pid])
            proc.communicate()


def test_ps_without_a_program_says_what_to_do():
    """Test that ``ps`` against an address where nothing listens exits 1 with advice."""
    result = run_ps("--registry", private_registry_addr())
    assert result.returncode == 1
    assert "no actor registry listens at uds:" in result.stderr
    assert "start your program first" in result.stderr
