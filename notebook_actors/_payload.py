"""Values on the wire: msgpack where it can, pickle for everything else.

A value travels as msgpack when msgspec encodes it natively (builtins, Structs,
dataclasses...): fast, language-neutral, and checked against ``msg_type=`` /
``payload_type=`` where it is received. Anything else — a numpy array, a DataFrame,
an instance of a class defined in ``__main__`` or a notebook cell — is pickled
(cloudpickle, protocol 5) *where it sits*: a dict holding an array and a few numbers
stays a msgpack map, and only the array becomes a msgpack extension (code
:data:`PICKLE_EXT`) inside it. The extension carries the value's type name (so a
strict receiver can say what it refused without unpickling it) and how many
out-of-band buffers follow.

Out-of-band buffers: pickle protocol 5 hands large contiguous buffers (an array's
data) to a callback instead of copying them into the pickle stream. While a frame is
being encoded (:func:`collecting`), buffers of at least :data:`OOB_MIN` bytes are
collected for the channel, which writes them as frames of their own (or passes them
through shared memory); the extension only says how many it takes, in order. The
receiving side decodes the payload with :func:`decode`, handing the buffers back in
the same order.

Pickled data runs code when it is loaded, so it is decoded only from channels that
passed the tree's handshake (payloads are never decoded before it), and a context
or actor can refuse it altogether (``typed_only``): :class:`PickleRefused`.
"""

from __future__ import annotations

import pickle
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgspec
from msgspec import Raw
from msgspec.msgpack import Ext

__all__ = [
    "OOB_MIN",
    "PICKLE_EXT",
    "Packed",
    "PickleRefused",
    "Received",
    "decode",
    "decoder_for",
    "describe_unpicklable",
    "enc_hook",
]

#: The msgpack extension code of a pickled value.
PICKLE_EXT = 1
#: Contiguous buffers at least this large leave the pickle stream (when the frame
#: being encoded collects them); smaller ones stay in band, where copying is cheaper
#: than a frame of their own.
OOB_MIN = 64 * 1024

# extension data: number of out-of-band buffers, length of the type name, type name, pickle
_EXT_HEAD = struct.Struct("<IH")


class PickleRefused(msgspec.DecodeError):
    """A typed-only receiver got a pickled value (raised while decoding it)."""


class Unpicklable(TypeError):
    """A value that msgpack cannot encode and pickle cannot either."""


class _State(threading.local):
    def __init__(self) -> None:
        self.out: list[memoryview] = []  # out-of-band buffers of the frame being encoded

    pickled = 0  # values pickled since the counter was last read
    inb: list[Any] | tuple[Any, ...] = ()  # buffers of the payload being decoded
    pos = 0
    refuse: str | None = None  # set: refuse pickles, this text says who refuses


_st = _State()


class Packed:
    """An encoded payload that comes with out-of-band buffers (see :func:`pack`).

    Placed in a message's ``pld`` field: encoding the message embeds ``raw`` and hands
    ``bufs`` to the frame being encoded.
    """

    __slots__ = ("bufs", "raw")

    def __init__(self, raw: Raw, bufs: list[memoryview]) -> None:
        self.raw, self.bufs = raw, bufs

    @property
    def nbytes(self) -> int:
        return len(self.raw) + sum(b.nbytes for b in self.bufs)


class Received:
    """A received payload and the out-of-band buffers that arrived with it."""

    __slots__ = ("bufs", "raw")

    def __init__(self, raw: Raw, bufs: list[Any]) -> None:
        self.raw, self.bufs = raw, bufs

    def __len__(self) -> int:
        return len(self.raw) + sum(len(b) for b in self.bufs)


class Deferred:
    """A pickled value in a call's arguments, decoded with the call message by the
    channel but unpickled only by the call itself (:func:`load_args`), so that a value
    that cannot be rebuilt fails that call, not the channel."""

    __slots__ = ("bufs", "data", "type_name")

    def __init__(self, type_name: str, data: bytes, bufs: list[Any]) -> None:
        self.type_name, self.data, self.bufs = type_name, data, bufs


class _Whole:
    """Pickle this value as one piece (msgpack refused it, e.g. an int over 64 bits)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _type_name(tp: type) -> str:
    mod = getattr(tp, "__module__", None)
    qual = getattr(tp, "__qualname__", tp.__name__)
    return qual if mod in (None, "builtins") else f"{mod}.{qual}"


# -- encoding ---------------------------------------------------------------------------


def enc_hook(obj: Any) -> Any:
    """msgspec's hook for what it cannot encode: an embedded payload, or a pickle."""
    if type(obj) is Packed:
        _st.out.extend(obj.bufs)
        return obj.raw
    if type(obj) is _Whole:
        obj = obj.value
    return _pickle_ext(obj)


def _plain_array(obj: Any) -> bool:
    """A numpy array of plain numbers: nothing in it needs pickling by value."""
    tp = type(obj)
    return tp.__name__ == "ndarray" and tp.__module__ == "numpy" and not obj.dtype.hasobject


def _pickle_ext(obj: Any) -> Ext:
    import cloudpickle

    bufs: list[memoryview] = []

    def keep_in_band(buf: pickle.PickleBuffer) -> bool:
        try:
            raw = buf.raw()
        except BufferError:  # not contiguous: the pickle stream copies it
            return True
        if raw.nbytes < OOB_MIN:
            return True
        bufs.append(raw)
        return False

    try:
        if _plain_array(obj):  # the common case: the C pickler, 2-3x faster than cloudpickle's
            if obj.nbytes >= OOB_MIN and not (obj.flags.c_contiguous or obj.flags.f_contiguous):
                # a strided view: pickle would copy it into the stream anyway; copied
                # here, its data travels out of band (and the message stays small)
                obj = obj.copy(order="K")
            data = pickle.dumps(obj, protocol=5, buffer_callback=keep_in_band)
        else:
            data = cloudpickle.dumps(obj, protocol=5, buffer_callback=keep_in_band)
    except Exception as exc:
        raise Unpicklable(f"{_type_name(type(obj))}: {exc}") from exc
    _st.out.extend(bufs)
    _st.pickled += 1
    name = _type_name(type(obj)).encode()[:1000]
    return Ext(PICKLE_EXT, _EXT_HEAD.pack(len(bufs), len(name)) + name + data)


@contextmanager
def collecting() -> Iterator[list[memoryview]]:
    """Collect the out-of-band buffers of what is encoded inside the block."""
    prev, _st.out = _st.out, []
    try:
        yield _st.out
    finally:
        _st.out = prev


def take_collected() -> list[memoryview]:
    """The out-of-band buffers collected since the last call (the frame just encoded);
    usually the empty collecting list itself, which the caller must not change."""
    out = _st.out
    if out:
        _st.out = []
    return out


def decode_message(decoder: msgspec.msgpack.Decoder[Any], body: Any, bufs: list[Any]) -> Any:
    """Decode a message that arrived with out-of-band buffers: a call's pickled
    arguments take theirs now; a payload keeps them for its own decode."""
    _st.inb, _st.pos = bufs, 0
    try:
        msg = decoder.decode(body)
    finally:
        _st.inb, _st.pos = (), 0
    if type(getattr(msg, "pld", None)) is Raw:
        msg.pld = Received(msg.pld, bufs)
    return msg


def take_pickled() -> int:
    """How many values were pickled since the last call (for a call's ``pickled`` flag)."""
    n, _st.pickled = _st.pickled, 0
    return n


def whole(value: Any) -> Any:
    """``value`` marked to travel as one pickle (for values msgpack rejects outright)."""
    return _Whole(value)


_encoder = msgspec.msgpack.Encoder(enc_hook=enc_hook)


def pack(value: Any) -> Any:
    """Encode a payload: a Raw, or a :class:`Packed` when it has out-of-band buffers.

    Raises:
        Unpicklable: a part of ``value`` fits neither msgpack nor pickle
            (:func:`describe_unpicklable` says which).
    """
    try:
        return _encode(value)
    except Unpicklable:
        raise
    except (TypeError, OverflowError):  # e.g. an int over 64 bits: msgpack refused the whole
        return _encode(_Whole(value))


def _encode(value: Any) -> Any:
    """Encode ``value`` as it is (msgpack, pickling the parts msgspec hands to the hook).

    Raises:
        TypeError, OverflowError: msgpack refused ``value`` itself, not a part it
            could pickle (an int over 64 bits, a dict with tuple keys).
    """
    # not through collecting(): this is every call's and every result's path
    try:
        raw = Raw(_encoder.encode(value))
    except BaseException:
        take_collected()
        raise
    bufs = take_collected()
    return Packed(raw, bufs) if bufs else raw


def pack_args(kwargs: dict[str, Any]) -> tuple[Any, int]:
    """Encode a call's arguments (a msgpack map whatever the values); return them
    and how many values were pickled.

    Raises:
        Unpicklable: an argument fits neither msgpack nor pickle.
    """
    take_pickled()
    try:
        packed = _encode(kwargs)
    except Unpicklable:
        raise
    except (TypeError, OverflowError):  # an argument msgpack refused as a whole travels as one pickle
        parts = {k: v if _fits_msgpack(v) else _Whole(v) for k, v in kwargs.items()}
        take_pickled()
        packed = _encode(parts)
    return packed, take_pickled()


def _fits_msgpack(value: Any) -> bool:
    try:
        _encoder.encode(value)
    except Unpicklable:
        return True  # pickling it part by part fails anyway, and says where
    except (TypeError, OverflowError):
        return False
    finally:
        take_collected()  # a trial: its out-of-band buffers belong to no frame
    return True


def is_pickled(pld: Any) -> bool:
    """Whether an encoded payload holds a pickled value."""
    raw = pld.raw if type(pld) is Packed else pld
    return _has_pickle_ext(bytes(raw))


def _has_pickle_ext(data: bytes) -> bool:
    found = False

    def spot(code: int, _data: memoryview) -> None:
        nonlocal found
        found = found or code == PICKLE_EXT

    msgspec.msgpack.Decoder(ext_hook=spot).decode(data)
    return found


#: An error's exception travels pickled with it up to this size (larger: its type,
#: message and traceback only).
ERROR_PICKLE_MAX = 16 * 1024 * 1024


def pack_exception(exc: BaseException) -> bytes | None:
    """``exc`` pickled for an error's payload (in band: errors are rare, and their
    frame is small), or None when it does not pickle or its pickle is too large."""
    import cloudpickle

    try:
        data = cloudpickle.dumps(exc, protocol=5)
    except Exception:  # a lock in its attributes, a class that cannot be found...
        return None
    return data if len(data) <= ERROR_PICKLE_MAX else None


def load_exception(data: bytes) -> BaseException | None:
    """An error's exception rebuilt from :func:`pack_exception`'s bytes, or None when
    it cannot be here (its class is not importable, its constructor refuses its args)."""
    try:
        exc = pickle.loads(data)
    except Exception:
        return None
    return exc if isinstance(exc, BaseException) else None


def describe_unpicklable(value: Any, root: str) -> str:
    """Where in ``value`` the part that cannot be pickled sits, its type and why:
    ``kwargs['model'].optimizer._lock (_thread.lock): cannot pickle ...``."""
    found = _find_unpicklable(value, root, 0)
    if found is None:
        return f"{root} ({_type_name(type(value))}) cannot be pickled"
    path, leaf, exc = found
    return f"{path} ({_type_name(type(leaf))}): {exc}"


def _find_unpicklable(value: Any, path: str, depth: int) -> tuple[str, Any, Exception] | None:
    import cloudpickle

    try:
        cloudpickle.dumps(value, protocol=5, buffer_callback=lambda _buf: False)
        return None
    except Exception as exc:
        err = exc
    if depth < 40:
        for sub, child in _children(value, path):
            found = _find_unpicklable(child, sub, depth + 1)
            if found is not None:
                return found
    return path, value, err


def _children(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for i, (k, v) in enumerate(value.items()):
            if i >= 10_000:
                return
            yield f"{path}[{k!r}]", v
    elif isinstance(value, (list, tuple, set, frozenset)):
        for i, v in enumerate(value):
            if i >= 10_000:
                return
            yield f"{path}[{i}]", v
    else:
        attrs = getattr(value, "__dict__", None)
        if isinstance(attrs, dict):
            for k, v in attrs.items():
                yield f"{path}.{k}", v
        for k in getattr(type(value), "__slots__", ()):
            if isinstance(k, str) and hasattr(value, k):
                yield f"{path}.{k}", getattr(value, k)


# -- decoding ---------------------------------------------------------------------------


def _ext_parts(data: memoryview) -> tuple[int, str, memoryview]:
    n, name_len = _EXT_HEAD.unpack_from(data)
    start = _EXT_HEAD.size
    name = bytes(data[start : start + name_len]).decode(errors="replace")
    return n, name, data[start + name_len :]


def _take_bufs(n: int) -> Any:
    pos = _st.pos
    bufs = _st.inb[pos : pos + n]
    if len(bufs) != n:
        raise msgspec.DecodeError(f"a pickled value announces {n} out-of-band buffers that did not arrive")
    _st.pos = pos + n
    return bufs


def ext_hook(code: int, data: memoryview) -> Any:
    """msgspec's hook for extensions: unpickle (unless refused)."""
    if code != PICKLE_EXT:
        return Ext(code, bytes(data))
    n, name, body = _ext_parts(data)
    if _st.refuse is not None:
        raise PickleRefused(f"refused a pickled {name}: {_st.refuse}")
    bufs = _take_bufs(n)
    try:
        return pickle.loads(body, buffers=bufs)
    except Exception as exc:
        raise msgspec.DecodeError(f"a pickled {name} could not be rebuilt here: {type(exc).__name__}: {exc}") from None


def deferring_ext_hook(code: int, data: memoryview) -> Any:
    """The call message's hook: keep pickled arguments for the call to unpickle."""
    if code != PICKLE_EXT:
        return Ext(code, bytes(data))
    n, name, body = _ext_parts(data)
    return Deferred(name, bytes(body), list(_take_bufs(n)))


_any_decoder = msgspec.msgpack.Decoder(ext_hook=ext_hook)
_typed_decoders: dict[Any, msgspec.msgpack.Decoder[Any]] = {}


def decoder_for(tp: Any = None) -> msgspec.msgpack.Decoder[Any]:
    """The payload decoder for ``tp`` (None: any value), pickles included."""
    if tp is None:
        return _any_decoder
    dec = _typed_decoders.get(tp)
    if dec is None:
        dec = msgspec.msgpack.Decoder(tp, ext_hook=ext_hook)
        if len(_typed_decoders) < 1000:
            _typed_decoders[tp] = dec
    return dec


def decode(
    pld: Any, decoder: msgspec.msgpack.Decoder[Any] = _any_decoder, refuse: str | None = None, once: bool = False
) -> Any:
    """Decode a received payload (a Raw, or :class:`Received` with its buffers).

    Args:
        refuse: when set, a pickled value raises :class:`PickleRefused` with this text
            (who refuses and why), instead of being loaded.
        once: the payload is decoded only this once (a stream message): its buffers
            are handed to the value and dropped from the message.

    Raises:
        msgspec.DecodeError: the payload does not decode (or match the decoder's
            type), a pickled value cannot be rebuilt here, or it was refused.
    """
    if type(pld) is not Received and refuse is None:
        return decoder.decode(pld)
    raw, bufs = (pld.raw, pld.bufs) if type(pld) is Received else (pld, ())
    _st.inb, _st.pos, _st.refuse = bufs, 0, refuse
    try:
        return decoder.decode(raw)
    finally:
        _st.inb, _st.pos, _st.refuse = (), 0, None
        if once and bufs:
            # the value owns its buffers now: a shared-memory segment is released as
            # soon as the value dies, not when the message object does
            pld.bufs = []


def load_args(kwargs: dict[str, Any], refuse: str | None = None) -> dict[str, Any]:
    """A call's arguments with their pickled values (:class:`Deferred`) rebuilt.

    Raises:
        PickleRefused: ``refuse`` is set and an argument was pickled.
        msgspec.DecodeError: a pickled argument cannot be rebuilt here.
    """
    return {k: _load(v, f"kwargs[{k!r}]", refuse) for k, v in kwargs.items()}


def _load(value: Any, path: str, refuse: str | None) -> Any:
    kind = type(value)
    if kind is Deferred:
        if refuse is not None:
            raise PickleRefused(f"refused {path}, a pickled {value.type_name}: {refuse}")
        try:
            bufs, value.bufs = value.bufs, []  # the argument owns its buffers from now on
            return pickle.loads(value.data, buffers=bufs)
        except Exception as exc:
            raise msgspec.DecodeError(
                f"{path}, a pickled {value.type_name}, could not be rebuilt here: {type(exc).__name__}: {exc}"
            ) from None
    if kind is dict:
        return {k: _load(v, f"{path}[{k!r}]", refuse) for k, v in value.items()}
    if kind is list:
        return [_load(v, f"{path}[{i}]", refuse) for i, v in enumerate(value)]
    return value
