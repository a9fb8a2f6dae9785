"""Security between users on one host, tested with a second Unix user (uid 65534 via
``setpriv``) in a private network namespace (``unshare --net``), so the addresses a
test binds never collide with anything else on the machine.

Each test runs a driver script (the victim, as this user) inside the namespace; the
attacker is a separate program the driver starts as the other user.
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

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("setpriv") or not shutil.which("ip"),
    reason="needs root (CI runs as root), unshare, setpriv and ip to make a second user and a private network",
)

NOBODY = 65534
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

COMMON = textwrap.dedent(
    f"""
    import json, os, subprocess, sys, time
    NOBODY = {NOBODY}
    PY = {sys.executable!r}

    def as_nobody(code, *args, env=None, **kw):
        \"\"\"Start ``code`` as the other user (no groups, its own home and temp dir).\"\"\"
        home = os.environ["OTHER_HOME"]
        base = {{"PATH": os.environ["PATH"], "HOME": home, "TMPDIR": home, "XDG_CONFIG_HOME": home + "/config",
                 "PYTHONPATH": {REPO!r}}}
        return subprocess.Popen(
            ["setpriv", f"--reuid={{NOBODY}}", f"--regid={{NOBODY}}", "--clear-groups", PY, "-c", code, *args],
            env={{**base, **(env or {{}})}}, text=True, **kw)
    """
)


@pytest.fixture(scope="module", autouse=True)
def code_reachable_by_the_other_user():
    """Let the other user run this interpreter and read this checkout, as a second
    user of a shared install would: each ancestor directory gets search permission
    (o+x) for the module (a clone in a `mktemp -d` folder is 0700), then its mode back."""
    import stat

    changed: dict[str, int] = {}
    for top in {REPO, sys.prefix, os.path.realpath(sys.executable)}:
        path = os.path.dirname(top) if os.path.isfile(top) else top
        while path not in ("/", ""):
            mode = os.stat(path).st_mode
            if not mode & stat.S_IXOTH and path not in changed:
                changed[path] = stat.S_IMODE(mode)
                os.chmod(path, stat.S_IMODE(mode) | stat.S_IXOTH)
            path = os.path.dirname(path)
    yield
    for path, mode in changed.items():
        os.chmod(path, mode)


@pytest.fixture
def other_home():
    """A home directory for the other user (its key file, its temp dir)."""
    path = tempfile.mkdtemp(prefix="na-other-")
    os.chown(path, NOBODY, NOBODY)
    os.chmod(path, 0o700)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run_in_netns(driver: str, other_home: str, *, timeout: float = 120, env: dict | None = None) -> dict:
    """Run ``driver`` (after COMMON) as this user in a fresh network namespace with
    only loopback; it prints one JSON line of results last."""
    code = COMMON + textwrap.dedent(driver)
    scratch = tempfile.mkdtemp(prefix="na-victim-")
    path = os.path.join(scratch, "driver.py")
    with open(path, "w") as f:
        f.write(code)
    full_env = {**os.environ, "OTHER_HOME": other_home, "PYTHONPATH": REPO, **(env or {})}
    full_env.pop("NOTEBOOK_ACTORS_REGISTRY", None)
    try:
        out = subprocess.run(
            ["unshare", "--net", "--", "sh", "-c", f'ip link set lo up && exec "{sys.executable}" "{path}"'],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    assert out.returncode == 0, f"driver failed:\n{out.stdout}\n{out.stderr}"
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["stderr"] = out.stderr
    return result


RELAY_ATTACKER = """
import socket, sys, threading, os
from notebook_actors._codec import encode_frame
from notebook_actors.msg import Start
# squat the victim's TCP registry address, and relay every byte between whoever
# dials it and the victim's own listener (transparently: any change to the bytes
# would only break TLS); then try a real RPC that would create the marker file
reg_port, victim_port, marker = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rpc = encode_frame(Start(0, "notebook_actors._runtime", "os.system", {"command": f"touch {marker}"}))
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", reg_port)); srv.listen(16)
print("SQUATTING", flush=True)
seen = bytearray()
def pump(a, b):
    while True:
        try:
            data = a.recv(65536)
        except OSError:
            data = b""
        if not data:
            for s in (a, b):
                try: s.shutdown(socket.SHUT_RDWR)
                except OSError: pass
            return
        seen.extend(data)
        try: b.sendall(data)
        except OSError: return
srv.settimeout(30)
conn, _ = srv.accept()
up = socket.create_connection(("127.0.0.1", victim_port))
t = [threading.Thread(target=pump, args=(conn, up)), threading.Thread(target=pump, args=(up, conn))]
for x in t: x.start()
for x in t: x.join(30)
print("RELAYED", len(seen), flush=True)
print("SEEN", seen.hex(), flush=True)
# a direct injection of the RPC in the clear; read until the victim hangs up on it
inj = socket.create_connection(("127.0.0.1", victim_port))
inj.sendall(rpc)
inj.settimeout(10)
try:
    while inj.recv(65536): pass
except OSError: pass
print("INJECTED", flush=True)
"""


def test_relay_of_a_squatted_registry_runs_nothing_and_leaks_nothing(other_home):
    """Test the reported attack: another user squats the TCP registry address the
    victim asked for and relays the victim's registration to the victim's own TCP
    listener. The relay is refused (the proof names the squatted address) and logged;
    nothing the attacker sends runs; the bytes it saw never contain the key; the
    victim's tree keeps working."""
    result = run_in_netns(
        f"""
        import trio, notebook_actors as na
        from notebook_actors._channel import load_secret
        REG, MINE = 1616, 1617
        marker = os.path.join(os.path.dirname(os.environ["OTHER_HOME"]), "pwned-" + str(os.getpid()))
        attacker = as_nobody({RELAY_ATTACKER!r}, str(REG), str(MINE), marker, stdout=subprocess.PIPE)
        assert attacker.stdout.readline() == "SQUATTING\\n"

        async def main():
            async with na.open_nursery(registry_addrs=[("127.0.0.1", REG)], bind_addr=("127.0.0.1", MINE)) as n:
                p = await n.start_actor("w", enable_modules=["os"])
                uid = await p.run_from_ns("os", "getuid")
                await p.cancel_actor()
                # the tree stays up until the attacker has relayed and injected
                out = (await trio.to_thread.run_sync(lambda: attacker.communicate(timeout=60)))[0]
                return uid, out

        uid, out = trio.run(main)
        assert "INJECTED" in out, out
        seen = bytes.fromhex(out.split("SEEN ")[1].split()[0]) if "SEEN " in out else b""
        key = load_secret()
        print(json.dumps({{"uid": uid, "relayed": len(seen), "key_seen": key in seen or key.hex().encode() in seen,
                          "pwned": os.path.exists(marker)}}))
        """,
        other_home,
    )
    assert result["uid"] == 0  # the victim's own tree still works
    assert result["relayed"] > 0, "the attacker did relay the victim's connection"
    assert result["key_seen"] is False
    assert result["pwned"] is False
    assert result["stderr"].count("someone relayed a connection meant for another address") == 1
    assert "not an actor of your tree" in result["stderr"]


FLOOD_ATTACKER = """
import socket, sys
# hold 150 idle connections to every address given; try the Unix ones too
held, refused = [], {}
for addr in sys.argv[1:]:
    for _ in range(150):
        try:
            if addr.startswith("uds:"):
                s = socket.socket(socket.AF_UNIX); s.connect(addr[4:])
            else:
                host, port = addr[4:].rsplit(":", 1); s = socket.create_connection((host, int(port)))
            held.append(s)
        except OSError as exc:
            refused[addr] = type(exc).__name__
print("HELD %d %s" % (len(held), sorted(refused.items())), flush=True)
sys.stdin.read()  # hold them until the victim is done
"""


def test_flood_from_another_user_leaves_connections_and_spawns_working(other_home):
    """Test that 150 idle connections from another user to every address the
    victim listens on (TCP registry, TCP actor address; the Unix socket refuses it
    outright) leave at least 90 % of the victim's new connections and spawns working,
    with a bounded number of log lines."""
    result = run_in_netns(
        """
        import trio, notebook_actors as na
        from notebook_actors._channel import connect, load_secret
        from notebook_actors.msg import Ident

        async def main():
            async with na.open_nursery(registry_addrs=[("127.0.0.1", 1616)], bind_addr=("127.0.0.1", 1617)) as n:
                me = na.current_actor()
                addrs = ["tcp:127.0.0.1:1616", me.addr]
                child = await n.start_actor("w0", enable_modules=["os"])
                child_addr = (await child.run_from_ns("self", "tree_snapshot"))["addr"]
                attacker = as_nobody(FLOOD, *addrs, child_addr, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                held = await trio.to_thread.run_sync(attacker.stdout.readline)
                ok_conn = 0
                for i in range(40):
                    try:
                        with trio.fail_after(10):
                            chan = await connect(addrs[i % 2], load_secret(), Ident(("legit", str(i)), os.getpid(), None))
                        await chan.aclose()
                        ok_conn += 1
                    except Exception:
                        pass
                ok_spawn = 0
                for i in range(10):
                    try:
                        with trio.fail_after(30):
                            p = await n.start_actor(f"s{i}", enable_modules=["os"])
                            assert await p.run_from_ns("os", "getpid")
                            await p.cancel_actor()
                        ok_spawn += 1
                    except Exception:
                        pass
                attacker.stdin.close()
                attacker.wait(30)
                await n.cancel()
                return held, ok_conn, ok_spawn

        held, ok_conn, ok_spawn = trio.run(main)
        print(json.dumps({"held": held, "ok_conn": ok_conn, "ok_spawn": ok_spawn}))
        """.replace("FLOOD", repr(FLOOD_ATTACKER)),
        other_home,
        timeout=300,
    )
    held = result["held"].split()
    assert int(held[1]) >= 300, result["held"]  # both TCP addresses took 150 each
    assert "PermissionError" in result["held"], "the Unix sockets must refuse another user"
    assert result["ok_conn"] >= 36, result  # >= 90 % of 40
    assert result["ok_spawn"] >= 9, result  # >= 90 % of 10
    assert len(result["stderr"].splitlines()) < 40, result["stderr"][-3000:]


SIDE_BY_SIDE = """
import os, sys, trio, notebook_actors as na
async def serve():
    async with na.open_root_actor(name="svc", enable_modules=["os"]):
        print("UP", flush=True)
        await trio.sleep_forever()
async def ask():
    async with na.open_root_actor(name="client"):
        async with na.find_actor("svc") as p:
            print("FOUND", -1 if p is None else await p.run_from_ns("os", "getuid"), flush=True)
trio.run(serve if sys.argv[1] == "serve" else ask)
"""


def test_two_users_discover_their_own_actors_side_by_side(other_home):
    """Test that two users' programs on one host, both with the default registry,
    each find their own service of the same name (and never the other's)."""
    own_tmp = tempfile.mkdtemp(prefix="na-owntmp-")
    result = run_in_netns(
        f"""
        code = {SIDE_BY_SIDE!r}
        mine_env = dict(os.environ)
        def mine(*a, **kw):
            return subprocess.Popen([PY, "-c", code, *a], text=True, env=mine_env, **kw)
        servers = [as_nobody(code, "serve", stdout=subprocess.PIPE), mine("serve", stdout=subprocess.PIPE)]
        for s in servers:
            assert s.stdout.readline() == "UP\\n"
        theirs = as_nobody(code, "ask", stdout=subprocess.PIPE).communicate(timeout=60)[0]
        ours = mine("ask", stdout=subprocess.PIPE).communicate(timeout=60)[0]
        for s in servers:
            s.kill(); s.wait()
        print(json.dumps({{"theirs": theirs.split(), "ours": ours.split()}}))
        """,
        other_home,
        env={"XDG_RUNTIME_DIR": "", "TMPDIR": own_tmp},
    )
    assert result["theirs"] == ["FOUND", str(NOBODY)]
    assert result["ours"] == ["FOUND", "0"]


def test_a_squatted_runtime_directory_does_not_stop_the_root(other_home):
    """Test that another user who pre-creates this user's socket directory (and a
    symlink at the next candidate) only costs the default path: the root starts,
    spawns and calls a child, and says which path it refused and why."""
    shared_tmp = tempfile.mkdtemp(prefix="na-sharedtmp-")
    os.chmod(shared_tmp, 0o1777)
    try:
        result = run_in_netns(
            """
            import trio, notebook_actors as na
            tmp = os.environ["TMPDIR"]
            squat = as_nobody(
                "import os, sys; t = sys.argv[1]; os.mkdir(t + '/notebook_actors-0', 0o777); "
                "os.chmod(t + '/notebook_actors-0', 0o777); os.symlink(t + '/notebook_actors-0', t + '/notebook_actors-0.1')",
                tmp,
            )
            assert squat.wait(30) == 0

            async def main():
                async with na.open_nursery() as n:
                    p = await n.start_actor("w", enable_modules=["os"])
                    pid = await p.run_from_ns("os", "getpid")
                    await p.cancel_actor()
                    return pid, na.current_actor().accept_addr

            pid, addr = trio.run(main)
            print(json.dumps({"pid": pid, "addr": addr}))
            """,
            other_home,
            env={"TMPDIR": shared_tmp, "XDG_RUNTIME_DIR": ""},
        )
    finally:
        shutil.rmtree(shared_tmp, ignore_errors=True)
    assert result["pid"] > 0
    assert result["addr"].startswith(f"uds:{shared_tmp}/notebook_actors-0.2/")
    assert f"not using {shared_tmp}/notebook_actors-0 for socket files (owner uid {NOBODY}" in result["stderr"]
    assert "a symlink" in result["stderr"]


GARBAGE_ATTACKER = """
import os, socket, sys
# open, send garbage and hang up at once, as fast as possible: each connection is
# gone (its socket orphaned or in TIME_WAIT) by the time the victim looks at it
host, port = sys.argv[1].rsplit(":", 1)
sent = 0
for _ in range(int(sys.argv[2])):
    try:
        s = socket.create_connection((host, int(port)))
        s.sendall(os.urandom(64))
        s.close()
        sent += 1
    except OSError:
        pass
print("SENT", sent, flush=True)
"""


def test_a_garbage_flood_is_summed_up_and_never_blamed_on_the_victim(other_home):
    """Test that another user's flood of garbage connections that hang up at once
    costs the victim a handful of log lines (one full line, then summaries per
    interval), that the summaries never name the victim's own user as the source
    (a peer gone before we look it up is named by its address, not by the owner
    of a closed socket's leftover, which the kernel shows as uid 0), and that the
    victim's tree keeps spawning and answering."""
    result = run_in_netns(
        """
        import trio, notebook_actors as na

        async def main():
            async with na.open_nursery(registry_addrs=[("127.0.0.1", 1616)], bind_addr=("127.0.0.1", 1617)) as n:
                attacker = as_nobody(GARBAGE, "127.0.0.1:1616", "2000", stdout=subprocess.PIPE)
                sent = (await trio.to_thread.run_sync(attacker.communicate))[0]
                p = await n.start_actor("w", enable_modules=["os"])
                pid = await p.run_from_ns("os", "getpid")
                await n.cancel()
                return sent, pid

        sent, pid = trio.run(main)
        print(json.dumps({"sent": sent, "pid": pid, "victim_uid": os.getuid()}))
        """.replace("GARBAGE", repr(GARBAGE_ATTACKER)),
        other_home,
        timeout=300,
    )
    assert result["sent"].split() == ["SENT", "2000"], result["sent"]
    assert result["pid"] > 0
    lines = result["stderr"].splitlines()
    assert len(lines) < 10, result["stderr"][-3000:]
    summaries = [line for line in lines if "more unauthenticated connection(s)" in line]
    assert summaries, result["stderr"][-3000:]  # the flood did reach the victim and was summed up
    victim = f"uid {result['victim_uid']} x"
    assert not any(victim in line for line in summaries), summaries


HOLDER = """
import socket, sys
# connect to the victim's port, say so, and hold the connection until stdin closes
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
print(s.getsockname()[1], flush=True)
sys.stdin.read()
"""


def test_a_loopback_peer_is_counted_as_its_user(other_home):
    """Test the source the flood budgets count a loopback TCP peer under: the user
    that owns the connecting socket (here uid 65534, however many sockets the host
    has: one exact kernel lookup, and the same answer as the socket table), and no
    user once the peer has hung up."""
    result = run_in_netns(
        """
        import socket, trio
        from notebook_actors._transport._admission import _proc_tcp_uid, _sock_diag_uid, peer_source
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        holder = as_nobody(HOLDER, str(port), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        their_port = int(holder.stdout.readline())
        conn, _ = listener.accept()
        ends = (conn.getpeername()[:2], conn.getsockname()[:2])
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(conn))  # as the listener sees it
        held = {"source": peer_source(stream), "diag": _sock_diag_uid(*ends), "proc": _proc_tcp_uid(*ends),
                "their_port": their_port, "seen_port": ends[0][1]}
        holder.stdin.close()
        holder.wait(30)
        assert conn.recv(1) == b""  # it hung up
        gone = {"source": peer_source(stream), "diag": _sock_diag_uid(*ends), "proc": _proc_tcp_uid(*ends)}
        conn.close()
        print(json.dumps({"held": held, "gone": gone}))
        """.replace("HOLDER", repr(HOLDER)),
        other_home,
    )
    held, gone = result["held"], result["gone"]
    assert held["their_port"] == held["seen_port"]
    assert held == {**held, "source": f"uid {NOBODY}", "diag": NOBODY, "proc": NOBODY}
    assert gone == {"source": "ip 127.0.0.1", "diag": None, "proc": None}


DIALER = """
import socket, sys
# try every port given; hold what connects until stdin closes
held, results = [], {}
for port in sys.argv[1:]:
    try:
        held.append(socket.create_connection(("127.0.0.1", int(port)), timeout=5))
        results[port] = "connected"
    except OSError as exc:
        results[port] = type(exc).__name__
print(" ".join(f"{p}={r}" for p, r in results.items()), flush=True)
sys.stdin.read()
"""


def test_the_actor_debugger_is_not_reachable_by_another_user(other_home):
    """Test ``%actor debugger``'s transport as another user sees it: while an
    actor's debugpy session is bridged to the tree (it answers ``initialize``), the
    actor has no TCP port anyone could connect to (debugpy's own listening mode let
    any local user attach and evaluate code as you), every TCP port the actor has is
    refused to uid 65534, and the bridge's one-shot listener tells a connection of
    this process from another user's."""
    result = run_in_netns(
        """
        import socket, psutil, trio, notebook_actors as na
        from notebook_actors.debug import _dap

        async def main():
            answered = trio.Event()
            replies = []

            async def handler(uid, send, receive):
                await send({"seq": 1, "type": "request", "command": "initialize", "arguments": {"adapterID": "t"}})
                async for msg in receive:
                    replies.append(msg.get("command"))
                    answered.set()
                    break
                await trio.sleep_forever()

            _dap.set_dap_handler(handler)
            async with na.open_nursery() as n:
                p = await n.start_actor("dbg", enable_modules=["os"])
                await p.run_from_ns("notebook_actors.debug._dap", "serve_dap")
                with trio.fail_after(30):
                    await answered.wait()
                pid = await p.run_from_ns("os", "getpid")
                conns = psutil.Process(pid).net_connections(kind="tcp")
                listening = [c.laddr.port for c in conns if c.status == psutil.CONN_LISTEN]
                ports = sorted({c.laddr.port for c in conns})
                dialer = as_nobody(DIALER, *map(str, ports), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                tried = (await trio.to_thread.run_sync(dialer.stdout.readline)).split()
                dialer.stdin.close()
                dialer.wait(30)
                await n.cancel()
            return replies, listening, tried

        replies, listening, tried = trio.run(main)

        # the bridge's filter: a socket of this process, and one of the other user
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        theirs = as_nobody(DIALER, str(port), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        theirs.stdout.readline()
        _, their_peer = listener.accept()
        mine = socket.create_connection(("127.0.0.1", port))
        _, my_peer = listener.accept()
        filter_says = {"theirs": _dap._from_this_process(their_peer), "mine": _dap._from_this_process(my_peer)}
        theirs.stdin.close()
        theirs.wait(30)
        print(json.dumps({"replies": replies, "listening": listening, "tried": tried, "filter": filter_says}))
        """.replace("DIALER", repr(DIALER)),
        other_home,
        timeout=180,
    )
    assert result["replies"] == ["initialize"], result  # the session through the tree works
    assert result["listening"] == [], "the debugged actor must not listen on TCP"
    assert result["tried"] and all(not t.endswith("=connected") for t in result["tried"]), result["tried"]
    assert result["filter"] == {"theirs": False, "mine": True}
