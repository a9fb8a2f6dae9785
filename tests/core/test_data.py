"""Data travels between real actor processes: numpy arrays, pandas objects, any
picklable value, through every path a value takes (call arguments and results,
run_in_actor, ctx.started, streams both ways, open_stream_from), and a typed-only
context refuses pickles clearly."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import trio

import notebook_actors as na

REPO = Path(__file__).resolve().parents[2]


@dataclasses.dataclass
class Model:
    name: str
    weights: np.ndarray


class Holder:
    """An object with a lock inside: it cannot be pickled."""

    def __init__(self) -> None:
        self.optimizer = Holder2()


class Holder2:
    def __init__(self) -> None:
        self.rate = 0.1
        self._lock = threading.Lock()


def echo(value):
    return value


def describe(arr, scale=1.0):
    return {"sum": float(arr.sum()) * scale, "dtype": str(arr.dtype), "shape": list(arr.shape), "pid": os.getpid()}


def double_frame(df):
    return df * 2


async def arrays(n: int, size: int):
    for i in range(n):
        yield np.full(size, i, dtype=np.int32)


@na.context
async def started_with_frame(ctx, rows: int) -> str:
    await ctx.started(pd.DataFrame({"a": range(rows), "b": [float(i) / 2 for i in range(rows)]}))
    return "done"


@na.context
async def doubler(ctx) -> int:
    await ctx.started()
    n = 0
    async with ctx.open_stream() as stream:
        async for arr in stream:
            await stream.send(arr * 2)
            n += 1
    return n


@na.context(typed_only=True)
async def typed_echo(ctx) -> str:
    await ctx.started("ready")
    async with ctx.open_stream() as stream:
        while True:
            try:
                value = await stream.receive()
            except na.MsgTypeError:
                continue  # refused (the sender is told): go on with the next one
            except trio.EndOfChannel:
                return "ended"
            await stream.send(value)


@na.context(typed_only=True)
async def typed_sends_an_array(ctx) -> str:
    await ctx.started()
    try:
        async with ctx.open_stream() as stream:
            await stream.send(np.arange(3))
    except TypeError as exc:
        return str(exc)
    return "sent"


def _run(body, reg):
    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("data", enable_modules=[__name__])
            with trio.fail_after(60):
                await body(portal)
            await portal.cancel_actor()

    trio.run(main)


VALUES = {
    "float64 vector": np.linspace(0, 1, 1000),
    "int8 matrix": np.arange(120, dtype=np.int8).reshape(10, 12),
    "non-contiguous view": np.arange(100.0).reshape(10, 10)[:, ::3],
    "fortran order": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
    "zero-length": np.empty((0, 3)),
    "structured dtype": np.array([(1, 2.5), (3, 4.5)], dtype=[("i", "i4"), ("f", "f8")]),
    "large (2 MiB)": np.arange(2 * 1024 * 1024 // 8, dtype=np.float64),
    "numpy scalar": np.int64(7),
}


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    return type(a) is type(b) and a == b


def test_arrays_round_trip_as_arguments_and_results(reg):
    """Test that numpy arrays of every kind (dtypes, views, orders, zero-length,
    large) go to an actor as an argument and come back as its return value."""

    async def body(portal) -> None:
        for label, value in VALUES.items():
            back = await portal.run(echo, value=value)
            assert _same(value, back), label
        info = await portal.run(describe, arr=np.ones(1_000_000), scale=2.0)
        assert info["sum"] == 2_000_000.0 and info["shape"] == [1_000_000] and info["pid"] != os.getpid()

    _run(body, reg)


def test_mixed_values_keep_their_typed_parts(reg):
    """Test that a dict mixing msgpack values and pickled ones comes back equal, with
    tuples-as-lists unchanged from the typed path, and pandas objects and a dataclass
    holding an array rebuilt."""

    async def body(portal) -> None:
        df = pd.DataFrame({"x": [1, 2, 3], "y": ["a", "b", "c"]})
        value = {
            "n": 1,
            "names": ["a", "b"],
            "arr": np.arange(5),
            "frame": df,
            "series": pd.Series([1.5, 2.5], name="s"),
            "model": Model("m", np.eye(2)),
            "blob": bytearray(b"xyz"),
        }
        back = await portal.run(echo, value=value)
        assert back["n"] == 1 and back["names"] == ["a", "b"]
        assert np.array_equal(back["arr"], value["arr"])
        pd.testing.assert_frame_equal(back["frame"], df)
        pd.testing.assert_series_equal(back["series"], value["series"])
        # the dataclass took the typed path: it arrives as its fields, the array rebuilt
        assert back["model"]["name"] == "m" and np.array_equal(back["model"]["weights"], np.eye(2))
        assert bytes(back["blob"]) == b"xyz"
        pd.testing.assert_frame_equal(await portal.run(double_frame, df=df[["x"]]), df[["x"]] * 2)

    _run(body, reg)


def test_bytes_big_ints_and_arrow_tables_round_trip(reg):
    """Test that bytes, a bytearray, a memoryview (arriving as bytes, as on the typed
    path), ints over 64 bits (alone, nested, as an argument of their own), a complex
    number and a pyarrow table go to an actor and come back."""
    pa = pytest.importorskip("pyarrow")

    async def body(portal) -> None:
        assert await portal.run(echo, value=b"\x00\xff" * 100_000) == b"\x00\xff" * 100_000
        assert await portal.run(echo, value=bytearray(b"abc")) == b"abc"
        assert await portal.run(echo, value=memoryview(b"view")) == b"view"
        assert await portal.run(echo, value=2**70) == 2**70
        mixed = await portal.run(echo, value={"big": [1, -(2**80)], "arr": np.arange(3)})
        assert mixed["big"] == [1, -(2**80)] and np.array_equal(mixed["arr"], np.arange(3))
        assert await portal.run(echo, value=3 + 4j) == 3 + 4j
        table = pa.table({"a": [1, 2, 3], "b": ["x", "y", None]})
        back = await portal.run(echo, value=table)
        assert isinstance(back, pa.Table) and back.equals(table)

    _run(body, reg)


def test_run_in_actor_returns_a_dataframe(reg):
    """Test that run_in_actor's result() delivers a DataFrame built from an array argument."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.run_in_actor(double_frame, df=pd.DataFrame({"v": np.arange(4)}))
            with trio.fail_after(60):
                got = await portal.result()
        pd.testing.assert_frame_equal(got, pd.DataFrame({"v": np.arange(4) * 2}))

    trio.run(main)


def test_started_value_is_a_dataframe(reg):
    """Test that ctx.started() hands the caller a pickled DataFrame."""

    async def body(portal) -> None:
        async with portal.open_context(started_with_frame, rows=50) as (ctx, first):
            assert list(first.columns) == ["a", "b"] and len(first) == 50 and first["b"].iloc[-1] == 24.5
        assert await ctx.result() == "done"

    _run(body, reg)


def test_arrays_stream_both_ways(reg):
    """Test that arrays sent on a two-way stream come back transformed, in order."""

    async def body(portal) -> None:
        async with portal.open_context(doubler) as (ctx, _):
            async with ctx.open_stream() as stream:
                for i in range(20):
                    arr = np.full(100_000 if i % 2 else 10, i, dtype=np.float32)
                    await stream.send(arr)
                    back = await stream.receive()
                    assert back.dtype == np.float32 and back.shape == arr.shape and back[0] == 2 * i
        assert await ctx.result() == 20

    _run(body, reg)


def test_open_stream_from_yields_arrays(reg):
    """Test that arrays an async generator yields arrive through open_stream_from."""

    async def body(portal) -> None:
        got = []
        async with portal.open_stream_from(arrays, n=30, size=70_000) as stream:
            async for arr in stream:
                got.append(int(arr[0]))
                assert arr.shape == (70_000,) and arr.dtype == np.int32
        assert got == list(range(30))

    _run(body, reg)


def test_unpicklable_argument_names_its_path_and_type(reg):
    """Test that an argument that pickles on neither path fails in the caller, naming
    the field path and the type where it sits; nothing reached the actor."""

    async def body(portal) -> None:
        with pytest.raises(TypeError) as info:
            await portal.run(echo, value={"model": Holder()})
        text = str(info.value)
        assert "kwargs['value']['model'].optimizer._lock" in text and "_thread.lock" in text
        assert await portal.run(echo, value=3) == 3

    _run(body, reg)


def test_typed_only_context_refuses_a_pickled_value(reg):
    """Test that a typed-only context refuses a pickled value with a MsgTypeError naming
    its type (the sender's next send says so too), keeps serving typed values, and
    refuses to send a pickled value itself."""

    async def body(portal) -> None:
        # the caller's side is typed-only too: it refuses to send the array at all
        async with portal.open_context(typed_echo) as (ctx, first):
            async with ctx.open_stream() as stream:
                with pytest.raises(TypeError) as info:
                    await stream.send(np.arange(3))
                assert "would travel pickled" in str(info.value) and "typed_only" in str(info.value)
                await stream.send([1])
                assert await stream.receive() == [1]
        assert await ctx.result() == "ended"
        # a caller that is not typed-only (the undecorated function: the same name)
        async with portal.open_context(typed_echo.__wrapped__) as (ctx, first):
            assert first == "ready"
            async with ctx.open_stream() as stream:
                await stream.send(np.arange(3))
                await stream.send({"plain": [1, 2]})
                assert await stream.receive() == {"plain": [1, 2]}
                with pytest.raises(na.MsgTypeError) as info:
                    await stream.send("more")
                assert "numpy.ndarray" in str(info.value) and "typed_only" in str(info.value)
        assert await ctx.result() == "ended"
        async with portal.open_context(typed_sends_an_array) as (ctx, _):
            pass
        text = await ctx.result()
        assert "would travel pickled" in text and "typed_only" in text

    _run(body, reg)


def test_typed_only_callee_refuses_a_pickled_argument(reg):
    """Test that a typed-only context refuses a pickled argument before its body runs,
    with an error naming the argument and its type."""

    async def body(portal) -> None:
        with pytest.raises(na.RemoteActorError) as info:
            async with portal.open_context(typed_echo_with_arg.__wrapped__, arr=np.arange(3)):
                pass
        assert "kwargs['arr']" in str(info.value) and "numpy.ndarray" in str(info.value)

    _run(body, reg)


@na.context(typed_only=True)
async def typed_echo_with_arg(ctx, arr) -> None:
    await ctx.started(len(arr))


MAIN_SCRIPT = """
import numpy as np
import trio
import notebook_actors as na
from tests.core.test_data import echo


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def norm2(self):
        return self.x * self.x + self.y * self.y


async def main():
    async with na.open_nursery(registry_addrs=[{addr!r}]) as n:
        portal = await n.start_actor("w", enable_modules=["tests.core.test_data"])
        back = await portal.run(echo, value=Point(3, np.float64(4)))
        print("BACK", type(back).__name__, back.norm2())
        await portal.cancel_actor()


trio.run(main)
"""


def test_a_class_from_main_travels_by_value(reg, tmp_path):
    """Test that an instance of a class defined in a script's __main__ goes to an actor
    and comes back with its methods."""
    script = tmp_path / "main_class.py"
    script.write_text(textwrap.dedent(MAIN_SCRIPT.format(addr=reg["registry_addrs"][0])))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "BACK Point 25.0" in out.stdout
