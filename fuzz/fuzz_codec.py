"""Coverage-guided fuzzing of the wire decoder (``make fuzz``).

Feeds arbitrary bytes, split into arbitrary chunks, to :class:`FrameDecoder` (with
and without ``skip_invalid``) and to the handshake decoder. The only acceptable
outcomes are messages, "wait for more bytes", :class:`InvalidFrame` or
:class:`FrameError`; any other exception is a crash, and a partial frame may never
hold more than one bounded frame.

Uses atheris (libFuzzer) when installed (``pip install atheris``), else a bounded
hypothesis run. Run::

    python fuzz/fuzz_codec.py -max_total_time=60        # atheris
    python fuzz/fuzz_codec.py --hypothesis 20000         # no atheris: N examples

A crash input found by atheris is written as ``crash-<sha1>``; copy it into
``fuzz/regressions/`` and ``tests/core/test_codec.py`` replays it on every test run.
"""

from __future__ import annotations

import sys

MAX = 64 * 1024


def check_one(data: bytes) -> None:
    """Run one input through every decoder; raise on anything but the allowed outcomes."""
    from notebook_actors._codec import HEADER, FrameDecoder, InvalidFrame
    from notebook_actors._exceptions import FrameError
    from notebook_actors.msg import AnyMsg, handshake_decoder, msg_decoder

    if not data:
        return
    # the first byte picks the chunk size, so the fuzzer explores partial frames too
    step = data[0] % 64 + 1
    body = data[1:]
    for skip in (False, True):
        decoder = FrameDecoder(msg_decoder, max_frame=MAX, peer="fuzz", skip_invalid=skip)
        try:
            for i in range(0, len(body), step):
                for msg in decoder.feed(body[i : i + step]):
                    assert isinstance(msg, (InvalidFrame, *AnyMsg.__args__)), msg
                assert decoder.buffered < HEADER + MAX, decoder.buffered
        except FrameError:
            pass
    try:
        handshake_decoder.decode(body)
    except Exception:
        pass  # _recv_frame turns any decode error into HandshakeError (it catches Exception)


def _atheris_main(argv: list[str]) -> None:
    import atheris

    with atheris.instrument_imports():
        import notebook_actors._codec  # noqa: F401
    atheris.Setup(argv, check_one)
    atheris.Fuzz()


def _hypothesis_main(examples: int) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.binary(max_size=4096))
    def run(data: bytes) -> None:
        check_one(data)

    run()
    print(f"hypothesis: {examples} examples, no crash")


def main() -> None:
    if "--hypothesis" in sys.argv:
        idx = sys.argv.index("--hypothesis")
        _hypothesis_main(int(sys.argv[idx + 1]) if len(sys.argv) > idx + 1 else 10_000)
        return
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("atheris is not installed: running a bounded hypothesis search instead")
        _hypothesis_main(10_000)
        return
    _atheris_main(sys.argv)


if __name__ == "__main__":
    main()
