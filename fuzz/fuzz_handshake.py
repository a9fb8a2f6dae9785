"""Coverage-guided fuzzing of the acceptor's handshake (``make fuzz``).

Plays an arbitrary dialer against :func:`handshake_as_acceptor` over an in-memory
stream: after the acceptor's challenge, the input (split into chunks by its first
byte) is all the dialer says; then it hangs up. The only acceptable outcomes are a
:class:`HandshakeError` (``PeerLeft`` included); an accepted handshake (nobody can
forge the proof without the key) or any other exception is a crash.

Uses atheris when installed, else a bounded hypothesis run::

    python fuzz/fuzz_handshake.py -max_total_time=60      # atheris
    python fuzz/fuzz_handshake.py --hypothesis 2000        # N examples
"""

from __future__ import annotations

import os
import sys

SECRET = b"fuzz-secret-0123456789abcdef0123"


def check_one(data: bytes) -> None:
    """Run one dialer script against a fresh acceptor; raise on a forbidden outcome."""
    import trio
    import trio.testing

    from notebook_actors._channel import handshake_as_acceptor
    from notebook_actors._exceptions import HandshakeError
    from notebook_actors.msg import Ident

    if not data:
        return
    step = data[0] % 32 + 1
    body = data[1:]

    async def main() -> None:
        client, server = trio.testing.memory_stream_pair()
        me = Ident(("acceptor", "0" * 32), os.getpid(), None)

        async def dialer() -> None:
            await client.receive_some()  # the challenge
            for i in range(0, len(body), step):
                await client.send_all(body[i : i + step])
            await client.aclose()

        async with trio.open_nursery() as n:
            n.start_soon(dialer)
            with trio.fail_after(10):
                try:
                    await handshake_as_acceptor(server, SECRET, me, "fuzz", own="uds:/fuzz.sock")
                except HandshakeError:
                    return
            raise AssertionError(f"a forged handshake was accepted: {data!r}")

    trio.run(main)


def _atheris_main(argv: list[str]) -> None:
    import atheris

    with atheris.instrument_imports():
        import notebook_actors._channel  # noqa: F401
    atheris.Setup(argv, check_one)
    atheris.Fuzz()


def _hypothesis_main(examples: int) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.binary(max_size=2048))
    def run(data: bytes) -> None:
        check_one(data)

    run()
    print(f"hypothesis: {examples} examples, no crash")


def main() -> None:
    if "--hypothesis" in sys.argv:
        idx = sys.argv.index("--hypothesis")
        _hypothesis_main(int(sys.argv[idx + 1]) if len(sys.argv) > idx + 1 else 2_000)
        return
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("atheris is not installed: running a bounded hypothesis search instead")
        _hypothesis_main(2_000)
        return
    _atheris_main(sys.argv)


if __name__ == "__main__":
    main()
