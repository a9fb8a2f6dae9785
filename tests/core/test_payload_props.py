"""Round-trip properties of the payload codec over mixed typed and pickled values.

Whatever nesting of msgpack-native values (typed path) and values only pickle can
carry (numpy arrays of any dtype, shape and stride, with buffers in band and out of
band, ints over 64 bits, complex numbers, instances of our own classes), a payload
encoded as a result, a stream message or a call's arguments, framed and fed to the
decoder in any chunking, comes back equal; and it travels pickled exactly when it
holds a value msgpack cannot encode (the typed path stays first).
"""

from __future__ import annotations

import fractions
import itertools

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from notebook_actors import _payload
from notebook_actors._codec import FrameDecoder, append_frame, append_inline
from notebook_actors.msg import Return, Start, Stop, Yield, msg_decoder

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Point:
    """A class of ours: pickled by reference, compared by value."""

    def __init__(self, x: float, y: float) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return type(other) is Point and (self.x, self.y) == (other.x, other.y)


typed_leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=40)
)

_dtypes = st.sampled_from(["f8", "f4", "i8", "i1", "u2", "?", "c8", "<M8[s]"]).map(np.dtype)


@st.composite
def small_arrays(draw) -> np.ndarray:
    """Arrays of any dtype and up to 3 dimensions (zero-length ones included), and
    now and then a strided, non-contiguous view of one."""
    arr = draw(hnp.arrays(_dtypes, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6)))
    if arr.ndim and draw(st.booleans()):
        arr = arr[..., :: draw(st.integers(1, 3))]
    return arr


@st.composite
def large_arrays(draw) -> np.ndarray:
    """Arrays big enough for their data to travel out of band (or just short of it)."""
    n = draw(st.integers(_payload.OOB_MIN - 8, 3 * _payload.OOB_MIN))
    arr = np.full(n, draw(st.integers(0, 255)), dtype=np.uint8)
    arr[draw(st.integers(0, n - 1))] ^= 0xFF
    if draw(st.booleans()):
        arr = arr[::2]  # not contiguous: pickle copies it in band
    return arr


pickled_leaves = (
    small_arrays()
    | large_arrays()
    | st.integers(2**64, 2**100)
    | st.integers(-(2**100), -(2**63) - 1)
    | st.complex_numbers(allow_nan=False, allow_infinity=False)
    | st.builds(fractions.Fraction, st.integers(), st.integers(1, 10**6))
    | st.builds(Point, st.floats(allow_nan=False), st.floats(allow_nan=False))
)


def _nested(leaves: st.SearchStrategy) -> st.SearchStrategy:
    return st.recursive(
        leaves,
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
        max_leaves=10,
    )


typed_values = _nested(typed_leaves)
mixed_values = _nested(typed_leaves | pickled_leaves)


def same(a, b) -> bool:
    """Equal as values, arrays by dtype, shape and bytes (NaT and NaN included), numbers
    by type too."""
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def has_pickled_leaf(value) -> bool:
    if isinstance(value, dict):
        return any(has_pickled_leaf(v) for v in value.values())
    if isinstance(value, list):
        return any(has_pickled_leaf(v) for v in value)
    return not (value is None or isinstance(value, (bool, float, str, bytes)) or type(value) is int) or (
        type(value) is int and not -(2**63) <= value < 2**64
    )


def framed(msgs: list) -> bytes:
    """The frames of ``msgs`` as a byte stream would carry them (buffers in line)."""
    out = bytearray()
    for msg in msgs:
        start = len(out)
        bufs = append_frame(out, msg)
        if bufs:
            append_inline(out, start, bufs)
    return bytes(out)


def received(data: bytes, cuts: list[int]) -> list:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    decoder = FrameDecoder(msg_decoder, max_frame=1 << 22, peer="test peer")
    msgs = []
    for a, b in itertools.pairwise(points):
        msgs.extend(decoder.feed(data[a:b]))
    assert decoder.buffered == 0
    return msgs


@SETTINGS
@given(st.lists(mixed_values, min_size=1, max_size=4), st.lists(st.integers(0, 10**6), max_size=30))
def test_results_and_stream_messages_round_trip(values, cuts):
    """Test that results and stream messages of mixed values, framed back to back and
    fed in any chunks, decode to equal values, in order."""
    msgs = [(Return if i % 2 else Yield)(i, _payload.pack(v)) for i, v in enumerate(values)]
    got = received(framed([*msgs, Stop(99)]), cuts)
    assert [type(m) for m in got] == [type(m) for m in msgs] + [Stop]
    for value, msg in zip(values, got, strict=False):
        assert same(value, _payload.decode(msg.pld))


@SETTINGS
@given(st.dictionaries(st.text(min_size=1, max_size=8), mixed_values, max_size=4), st.lists(st.integers(0, 10**6)))
def test_call_arguments_round_trip(kwargs, cuts):
    """Test that a call's arguments keep their names and values, the pickled ones
    rebuilt only when the call loads them, and the count of pickled values is right
    (0 exactly when every argument is msgpack-native)."""
    packed, pickled = _payload.pack_args(kwargs)
    [start] = received(framed([Start(1, "mod", "fn", packed, pickled=pickled)]), cuts)
    assert (pickled > 0) == any(has_pickled_leaf(v) for v in kwargs.values())
    back = _payload.load_args(start.kwargs) if start.pickled else start.kwargs
    assert same(kwargs, back)


@SETTINGS
@given(typed_values)
def test_typed_values_stay_typed(value):
    """Test that a value msgpack encodes natively is never pickled: it decodes with a
    plain msgpack decoder, equal."""
    import msgspec

    packed = _payload.pack(value)
    assert not _payload.is_pickled(packed)
    assert same(value, msgspec.msgpack.decode(bytes(packed)))


@SETTINGS
@given(mixed_values)
def test_pickled_exactly_when_msgpack_cannot(value):
    """Test that a payload holds a pickle exactly when some part of it is not
    msgpack-native, and that refusing pickles refuses exactly those payloads."""
    packed = _payload.pack(value)
    assert _payload.is_pickled(packed) == has_pickled_leaf(value)
    msgs = received(framed([Return(1, packed)]), [])
    try:
        back = _payload.decode(msgs[0].pld, refuse="typed values only")
    except _payload.PickleRefused:
        assert has_pickled_leaf(value)
    else:
        assert not has_pickled_leaf(value) and same(value, back)
