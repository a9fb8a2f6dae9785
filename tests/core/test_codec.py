"""The wire codec under hostile input: property-based tests of FrameDecoder.

Whatever bytes arrive, the decoder returns messages, waits for more, or raises
FrameError; it never crashes with another error and never buffers more than one
announced (and bounded) frame.
"""

from __future__ import annotations

import itertools
import sys
import threading
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from notebook_actors import _payload
from notebook_actors._codec import (
    DATA_FLAG,
    ENTRY,
    HEADER,
    INLINE,
    SHARED,
    FrameDecoder,
    InvalidFrame,
    append_frame,
    append_inline,
    encode_frame,
)
from notebook_actors._exceptions import FrameError
from notebook_actors.msg import (
    AnyMsg,
    Cancel,
    Credit,
    Error,
    ErrorInfo,
    Return,
    Start,
    Started,
    Stop,
    Yield,
    encoder,
    msg_decoder,
)

MAX = 64 * 1024
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def new_decoder(**kw) -> FrameDecoder:
    return FrameDecoder(msg_decoder, max_frame=MAX, peer="test peer", **kw)


def frame_bytes(body: bytes) -> bytes:
    return len(body).to_bytes(HEADER, "big") + body


def feed_all(decoder: FrameDecoder, chunks: list[bytes]) -> list:
    out = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
    return out


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


# msgpack values of every kind, nested
json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=20,
)
raw = json_like.map(lambda v: msgspec.Raw(encoder.encode(v)))
uid = st.tuples(st.text(max_size=10), st.text(max_size=10))
cids = st.integers(0, 2**40)

messages = st.one_of(
    st.builds(
        Start,
        cids,
        st.text(max_size=20),
        st.text(max_size=20),
        st.dictionaries(st.text(max_size=8), json_like, max_size=4),
        st.sampled_from(["call", "context", "stream"]),
        st.integers(0, 1000),
    ),
    st.builds(Started, cids, raw),
    st.builds(Yield, cids, raw),
    st.builds(Return, cids, raw),
    st.builds(Stop, cids),
    st.builds(Cancel, cids),
    st.builds(Credit, cids, st.integers(0, 2**31)),
    st.builds(
        Error,
        st.none() | cids,
        st.builds(
            ErrorInfo,
            st.text(max_size=10),
            st.text(max_size=10),
            st.text(max_size=30),
            st.text(max_size=30),
            st.none() | uid,
        ),
    ),
)


def _nest(depth: int) -> list:
    value: list | None = None
    for _ in range(depth):
        value = [value]
    return value  # type: ignore[return-value]


def same(a, b) -> bool:
    return encoder.encode(a) == encoder.encode(b)


class TestFrameDecoder:
    @SETTINGS
    @given(st.lists(messages, min_size=1, max_size=8), st.lists(st.integers(0, 10_000), max_size=12))
    def test_round_trip_any_chunking(self, msgs, cuts):
        """Test that any sequence of messages survives being split at arbitrary byte
        positions, and nothing is left buffered after the last frame."""
        out = bytearray()
        for m in msgs:
            append_frame(out, m)
        decoder = new_decoder()
        got = feed_all(decoder, chunked(bytes(out), cuts))
        assert len(got) == len(msgs)
        assert all(same(a, b) for a, b in zip(got, msgs, strict=False))
        assert decoder.buffered == 0

    @SETTINGS
    @given(st.binary(max_size=2048), st.lists(st.integers(0, 4096), max_size=6))
    def test_arbitrary_bytes_only_frame_error(self, data, cuts):
        """Test that arbitrary bytes give messages, InvalidFrame or FrameError, never
        any other exception, and never hold more than the announced frame."""
        decoder = new_decoder(skip_invalid=True)
        try:
            for chunk in chunked(data, cuts):
                for m in decoder.feed(chunk):
                    assert isinstance(m, (InvalidFrame, *AnyMsg.__args__))
                assert decoder.buffered < HEADER + MAX
        except FrameError as exc:
            assert "test peer" in str(exc)

    @SETTINGS
    @given(messages, st.integers(1, 10_000))
    def test_truncated_frame_waits(self, msg, cut):
        """Test that a frame cut short yields nothing and waits, then completes."""
        data = encode_frame(msg)
        cut = cut % len(data)
        decoder = new_decoder()
        assert decoder.feed(data[:cut]) == []
        assert decoder.buffered == cut
        [got] = decoder.feed(data[cut:])
        assert same(got, msg)

    @SETTINGS
    @given(st.integers(MAX + 1, 2**31 - 1), st.binary(max_size=64))
    def test_oversized_prefix_refused_before_body(self, size, tail):
        """Test that a header announcing more than the limit raises FrameError at once,
        naming the size and the limit, without waiting for (or buffering) the body
        (headers with the top bit set are data frames: see TestDataFrames)."""
        decoder = new_decoder()
        with pytest.raises(FrameError, match=rf"announces {size} bytes, over the limit of {MAX}"):
            decoder.feed(size.to_bytes(HEADER, "big") + tail)
        assert decoder.buffered == 0

    def test_four_gib_header(self):
        """Test that a valid-looking 4 GiB header (0xFFFFFFFF) is refused immediately."""
        decoder = FrameDecoder(msg_decoder, peer="test peer")
        with pytest.raises(FrameError, match="over the limit"):
            decoder.feed(b"\xff\xff\xff\xff" + b"\x00" * 16)

    @pytest.mark.parametrize("depth", [10_000, 200_000])
    def test_deeply_nested_payload(self, depth):
        """Test that a Start whose kwargs nest arrays thousands deep gives FrameError
        (msgspec raises RecursionError, which must not escape)."""
        # ["start", 1, "m", "f", {"k": [[[...]]]}]
        body = b"\x95\xa5start\x01\xa1m\xa1f" + b"\x81\xa1k" + b"\x91" * depth + b"\xc0"
        for skip in (False, True):
            decoder = FrameDecoder(msg_decoder, peer="test peer", skip_invalid=skip)
            with pytest.raises(FrameError, match="nested too deeply"):
                decoder.feed(frame_bytes(body))

    def test_nested_payload_within_encoder_limit_passes(self):
        """Test that a payload nested as deep as our encoder produces (msgspec.Raw)
        passes the channel decoder, and one deeper than any encoder of ours can
        produce is a FrameError, not a RecursionError."""
        ok = b"\x91" * 500 + b"\xc0"
        [got] = new_decoder().feed(frame_bytes(encoder.encode(Yield(3, msgspec.Raw(ok)))))
        assert bytes(got.pld) == ok
        too_deep = b"\x91" * 5000 + b"\xc0"
        with pytest.raises(RecursionError):
            encoder.encode(_nest(5000))
        with pytest.raises(FrameError, match="nested too deeply"):
            new_decoder().feed(frame_bytes(encoder.encode(Yield(3, msgspec.Raw(too_deep)))))

    @SETTINGS
    @given(st.data())
    def test_wrong_type_in_every_field(self, data):
        """Test that a message with a wrong-typed value in any field is refused: FrameError
        without skip_invalid, an InvalidFrame naming the field with it (and the frames
        after it still decode)."""
        msg = data.draw(messages)
        fields = encoder.encode(msg)
        as_list = msgspec.msgpack.decode(fields)
        index = data.draw(st.integers(1, len(as_list) - 1))
        wrong = data.draw(st.sampled_from([1.5, "text", [1, [2]], {"a": None}, True, -1, b"\x00"]))
        as_list[index] = wrong
        body = encoder.encode(as_list)
        try:
            msg_decoder.decode(body)
        except msgspec.ValidationError:
            pass
        else:  # the wrong value happens to be acceptable there (e.g. any kwargs value)
            return
        with pytest.raises(FrameError, match="invalid message"):
            new_decoder().feed(frame_bytes(body))
        good = encode_frame(Stop(7))
        bad, after = new_decoder(skip_invalid=True).feed(frame_bytes(body) + good)
        assert isinstance(bad, InvalidFrame) and bad.tag == as_list[0]
        assert f"$[{index}]" in bad.error or "Expected" in bad.error
        assert after == Stop(7)

    def test_unknown_message_type(self):
        """Test that a well-formed message of an unknown type is an InvalidFrame carrying
        its tag and call id."""
        body = encoder.encode(["from_the_future", 9, {"x": 1}])
        [bad] = new_decoder(skip_invalid=True).feed(frame_bytes(body))
        assert (bad.tag, bad.cid) == ("from_the_future", 9)
        assert "from_the_future" in bad.error

    def test_messages_before_a_bad_frame_are_kept(self):
        """Test that the FrameError for a bad frame carries the messages decoded before it."""
        data = encode_frame(Stop(1)) + encode_frame(Stop(3)) + frame_bytes(b"\xc1")  # 0xc1: never valid
        with pytest.raises(FrameError, match="undecodable") as info:
            new_decoder().feed(data)
        assert info.value.decoded == [Stop(1), Stop(3)]

    def test_large_frame_in_small_chunks(self):
        """Test that a multi-megabyte frame arriving in small chunks decodes once, whole
        (the partial frame is kept as chunks, not re-copied on every feed)."""
        pld = msgspec.Raw(encoder.encode(b"x" * (3 * 1024 * 1024)))
        data = encode_frame(Return(5, pld))
        decoder = FrameDecoder(msg_decoder, peer="test peer")
        got = []
        for i in range(0, len(data), 4096):
            got.extend(decoder.feed(data[i : i + 4096]))
        [ret] = got
        assert bytes(ret.pld) == bytes(pld)


def data_frame(msg) -> bytes:
    out = bytearray()
    bufs = append_frame(out, msg)
    assert bufs, "the message has no out-of-band buffers"
    append_inline(out, 0, bufs)
    return bytes(out)


class TestDataFrames:
    """Frames with out-of-band buffers: announced, limited, received into place."""

    @SETTINGS
    @given(st.lists(st.integers(0, 300_000), min_size=1, max_size=4), st.lists(st.integers(1, 10**6), max_size=20))
    def test_buffers_arrive_whole_in_any_chunking(self, sizes, cuts):
        """Test that a data frame with inline buffers of any sizes, fed in any chunks,
        gives back the message with every buffer's bytes in order."""
        import numpy as np

        sizes = [_payload.OOB_MIN, *sizes]  # one at least goes out of band
        arrays = [np.full(n, i % 251, dtype=np.uint8) for i, n in enumerate(sizes)]
        data = data_frame(Return(7, _payload.pack(arrays))) + frame_bytes(encoder.encode(Stop(7)))
        decoder = FrameDecoder(msg_decoder, max_frame=1 << 20, peer="test peer")
        got = feed_all(decoder, chunked(data, cuts))
        assert [type(m) for m in got] == [Return, Stop] and decoder.buffered == 0
        back = _payload.decode(got[0].pld)
        assert [a.tobytes() for a in back] == [a.tobytes() for a in arrays]

    @SETTINGS
    @given(st.integers(MAX + 1, 2**31 - 1))
    def test_oversized_control_message_refused(self, size):
        """Test that a data frame whose control message is over the frame limit is
        refused at once, before its table or body."""
        decoder = new_decoder()
        with pytest.raises(FrameError, match="control message, over the limit"):
            decoder.feed((DATA_FLAG | size).to_bytes(HEADER, "big"))
        assert decoder.buffered == 0

    @pytest.mark.parametrize("count", [0, 4097, 2**32 - 1])
    def test_buffer_count_out_of_range_refused(self, count):
        """Test that announcing no buffers, or more than the limit, is refused."""
        with pytest.raises(FrameError, match=f"announces {count} buffers"):
            new_decoder().feed((DATA_FLAG | 10).to_bytes(HEADER, "big") + count.to_bytes(4, "big"))

    def test_data_over_the_limit_refused_before_allocation(self):
        """Test that buffers announced beyond max_data are refused from the table
        alone (nothing is allocated), while the same frame under a larger limit is
        accepted: a 2 GB array is not refused by the frame limit."""
        table = (DATA_FLAG | 3).to_bytes(HEADER, "big") + (1).to_bytes(4, "big")
        table += ENTRY.pack(2 * 10**9, INLINE, 0) + b"\x91\x01\x02"[:3]
        small = FrameDecoder(msg_decoder, max_frame=MAX, max_data=10**9, peer="test peer")
        with pytest.raises(FrameError, match="2000000000 bytes of buffers, over the limit"):
            small.feed(table)
        big = FrameDecoder(msg_decoder, max_frame=MAX, max_data=4 * 10**9, peer="test peer")
        assert big.feed(table[:-3]) == []  # waits for the control message, refuses nothing

    def test_shared_buffer_without_descriptor_refused(self):
        """Test that a frame announcing shared memory on a stream that cannot carry
        descriptors is a FrameError, not a crash."""
        body = encoder.encode(Stop(1))
        frame = (DATA_FLAG | len(body)).to_bytes(HEADER, "big") + (1).to_bytes(4, "big")
        frame += ENTRY.pack(4096, SHARED, 1) + body
        with pytest.raises(FrameError, match=r"unknown kind|did not send"):
            new_decoder().feed(frame)


class TestEncode:
    def test_unencodable_leaves_buffer_intact(self):
        """Test that a message the codec cannot encode raises TypeError and leaves the
        output buffer exactly as it was (no half-written frame)."""
        out = bytearray(encode_frame(Stop(1)))
        before = bytes(out)
        with pytest.raises(TypeError):
            append_frame(out, Start(1, "m", "f", {"x": threading.Lock()}))
        assert bytes(out) == before


REGRESSIONS = Path(__file__).resolve().parents[2] / "fuzz" / "regressions"


@pytest.mark.parametrize("path", sorted(REGRESSIONS.iterdir()), ids=lambda p: p.name)
def test_fuzz_regression(path):
    """Test that an input the fuzzer (or a review) once crashed the decoder with
    passes through every decoder with only the allowed outcomes."""
    sys.path.insert(0, str(REGRESSIONS.parent))
    try:
        from fuzz_codec import check_one
    finally:
        sys.path.remove(str(REGRESSIONS.parent))
    check_one(path.read_bytes())


def test_bad_utf8_tag_is_frame_error():
    """Test that a message whose tag is not valid UTF-8 (msgspec raises
    UnicodeDecodeError, found by the fuzzer) is a FrameError, not a crash."""
    body = b"\x95\xa5\x98tart\x01\xa1m\xa1f\x80"
    for skip in (False, True):
        with pytest.raises(FrameError):  # msgspec's own wording varies by release: not matched
            new_decoder(skip_invalid=skip).feed(frame_bytes(body))


def test_fuzz_target_bounded_run():
    """Test that the fuzz target (`make fuzz`) runs a small bounded campaign cleanly:
    atheris for a few thousand inputs when installed, else its hypothesis fallback."""
    import subprocess

    target = REGRESSIONS.parent / "fuzz_codec.py"
    try:
        import atheris  # noqa: F401

        args = ["-runs=3000", "-seed=1"]
    except ImportError:
        args = ["--hypothesis", "300"]
    done = subprocess.run([sys.executable, str(target), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Done 3000 runs" in done.stderr or "300 examples, no crash" in done.stdout
