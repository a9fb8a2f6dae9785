"""What keeps ``%%actor`` cells fast, in a real kernel (no timings: the bench measures)."""

from __future__ import annotations

from notebook_actors.kernel_ext import _actors

#: A cell that lists the cell modules this actor imported itself: the fork server's
#: template ``gc.freeze()``s what it preloaded before it forks, and frozen objects are
#: not in ``gc.get_objects()``, so a module imported after the fork is.
NOT_PRELOADED = (
    "import gc, sys\n"
    "_ids = {id(o) for o in gc.get_objects()}\n"
    f"[m for m in {_actors.CELL_PRELOAD!r} if id(sys.modules[m].__dict__) in _ids]"
)


def test_new_actors_start_with_the_cell_modules_imported(kernel):
    """Test that a new notebook actor, top-level or nested, was forked with its cell
    runtime, psutil and the debugger already imported (its first cell imports none)."""
    assert kernel.value(f"%%actor warmstart\n{NOT_PRELOADED}") == []
    assert kernel.value(f"%%actor warmstart/inner\n{NOT_PRELOADED}") == []


def test_the_users_preload_modules_stay_first(monkeypatch):
    """Test that the kernel adds its modules to NOTEBOOK_ACTORS_FORKSERVER_PRELOAD after
    the user's, once each."""
    monkeypatch.setenv(_actors.PRELOAD_VAR, "cloudpickle,psutil")
    _actors.preload_cell_modules()
    _actors.preload_cell_modules()
    names = _actors.os.environ[_actors.PRELOAD_VAR].split(",")
    assert names[:2] == ["cloudpickle", "psutil"]
    assert sorted(names) == sorted({"cloudpickle", *_actors.CELL_PRELOAD})
