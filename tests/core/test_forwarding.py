"""Actors behind a port forward (NAT, a container's port mapping): the handshake binds
the address the dialer meant to reach, so a forward is refused as a relay unless the
actor names the forwarded address with ``also_known_as=``.

The forward is real kernel NAT: an nftables DNAT rule in a private network namespace
(``unshare --net``) sends ``10.99.0.1:9000`` to the actor's ``127.0.0.1:1616``, as a
gateway's port mapping would; ``10.99.0.1`` is not an address of this host, so a
program that dials it cannot bind it itself.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

import pytest
import trio

import notebook_actors as na

needs_nat = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(tool) for tool in ("unshare", "ip", "nft")),
    reason="needs root (CI runs as root), unshare, ip and nft for NAT in a private network namespace",
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: the gateway's address and two of its forwarded ports, both to the actor's 1616
GATEWAY, NAMED_PORT, UNNAMED_PORT, ACTOR_PORT = "10.99.0.1", 9000, 9001, 1616

NAT_SETUP = f"""
ip link set lo up
ip route add {GATEWAY}/32 dev lo src 127.0.0.1
nft add table ip nat
nft 'add chain ip nat out {{ type nat hook output priority -100; }}'
nft add rule ip nat out ip daddr {GATEWAY} tcp dport {NAMED_PORT} dnat to 127.0.0.1:{ACTOR_PORT}
nft add rule ip nat out ip daddr {GATEWAY} tcp dport {UNNAMED_PORT} dnat to 127.0.0.1:{ACTOR_PORT}
"""

SERVICE = f"""
import sys, trio, notebook_actors as na
aliases = [tuple(a.rsplit(":", 1)) for a in sys.argv[1:]]
async def main():
    async with na.open_root_actor(name="svc", enable_modules=["os"], registry_addrs=[("127.0.0.1", {ACTOR_PORT})],
                                  bind_addr=("127.0.0.1", 1617), also_known_as=[(h, int(p)) for h, p in aliases]):
        print("UP", flush=True)
        await trio.sleep_forever()
trio.run(main)
"""

CLIENT = """
import json, sys, trio, notebook_actors as na
port = int(sys.argv[1])
async def main():
    async with na.open_root_actor(name="client", registry_addrs=[(GATEWAY, port)]):
        try:
            with trio.fail_after(20):
                async with na.get_registry(GATEWAY, port) as svc:
                    return {"pid": await svc.run_from_ns("os", "getpid")}
        except Exception as exc:
            return {"error": type(exc).__name__}
print(json.dumps(trio.run(main)))
""".replace("GATEWAY", repr(GATEWAY))

DRIVER = """
import json, os, subprocess, sys
svc = subprocess.Popen([sys.executable, "-c", SERVICE, *sys.argv[1:]], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)
assert svc.stdout.readline() == "UP\\n", svc.communicate(timeout=30)
results = {}
for port in (NAMED_PORT, UNNAMED_PORT):
    out = subprocess.run([sys.executable, "-c", CLIENT, str(port)], capture_output=True, text=True, timeout=120)
    results[str(port)] = json.loads(out.stdout.strip().splitlines()[-1]) if out.stdout.strip() else out.stderr
svc.terminate()
results["svc_pid"] = svc.pid
results["svc_stderr"] = svc.communicate(timeout=30)[1]
print(json.dumps(results))
"""


def run_behind_nat(*aliases: str) -> dict:
    """Start the service (``also_known_as`` = ``aliases``) in a namespace with the
    forward set up, dial it through both forwarded ports; return what each client got."""
    driver = f"SERVICE, CLIENT = {SERVICE!r}, {CLIENT!r}\nNAMED_PORT, UNNAMED_PORT = {NAMED_PORT}, {UNNAMED_PORT}\n"
    driver += textwrap.dedent(DRIVER)
    scratch = tempfile.mkdtemp(prefix="na-nat-")
    path = os.path.join(scratch, "driver.py")
    with open(path, "w") as f:
        f.write(driver)
    env = {**os.environ, "PYTHONPATH": REPO}
    env.pop("NOTEBOOK_ACTORS_REGISTRY", None)
    try:
        out = subprocess.run(
            [
                "unshare",
                "--net",
                "--",
                "sh",
                "-ec",
                f'{NAT_SETUP}\nexec "{sys.executable}" "{path}" "$@"',
                "sh",
                *aliases,
            ],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    assert out.returncode == 0, f"driver failed:\n{out.stdout}\n{out.stderr}"
    return json.loads(out.stdout.strip().splitlines()[-1])


@needs_nat
def test_a_forward_the_actor_names_works_and_any_other_is_refused():
    """Test that a client reaching the registry through a forwarded port the actor
    named in ``also_known_as`` calls it, while the same actor through a second,
    unnamed forward is refused as a relay (logged once; nothing runs)."""
    result = run_behind_nat(f"{GATEWAY}:{NAMED_PORT}")
    assert result[str(NAMED_PORT)] == {"pid": result["svc_pid"]}
    assert result[str(UNNAMED_PORT)] == {"error": "HandshakeError"}
    refusals = [line for line in result["svc_stderr"].splitlines() if "someone relayed a connection" in line]
    assert len(refusals) == 1, result["svc_stderr"]
    assert f"made for tcp:{GATEWAY}:{UNNAMED_PORT}, not for tcp:127.0.0.1:{ACTOR_PORT}" in refusals[0]


@needs_nat
def test_without_also_known_as_a_forward_is_refused_as_a_relay():
    """Test the default: an actor that names no forwarded address refuses every
    forward, as it refuses any relay (the binding that stops another user's relay)."""
    result = run_behind_nat()
    assert result[str(NAMED_PORT)] == {"error": "HandshakeError"}
    assert result[str(UNNAMED_PORT)] == {"error": "HandshakeError"}
    assert "someone relayed a connection" in result["svc_stderr"]


def test_an_unresolvable_forwarded_name_is_an_error_at_start(reg):
    """Test that a host name in ``also_known_as`` that does not resolve stops the
    root at start with one error naming it (not a refusal of every dialer later)."""

    async def main() -> None:
        async with na.open_root_actor(also_known_as=[("no-such-host.invalid", 8616)], **reg):
            pytest.fail("the root started with an address it cannot resolve")

    with pytest.raises(OSError, match=r"also_known_as address tcp:no-such-host\.invalid:8616"):
        trio.run(main)
