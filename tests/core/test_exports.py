"""The public face: what ``import notebook_actors`` exports, and what it costs to import."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

import notebook_actors as na

PUBLIC_SUBMODULES = ("msg", "to_asyncio", "trionics", "log", "experimental", "testing")

#: Never imported by ``import notebook_actors``: the notebook stack belongs to
#: kernel_ext/widgets, pdbpp is loaded when a REPL opens, asyncio only for guest runs
#: and infected actors, multiprocessing only by the mp_* spawn backends.
HEAVY = ("IPython", "ipykernel", "ipywidgets", "anywidget", "pdbpp", "pdb", "asyncio", "multiprocessing", "cloudpickle")


def test_every_name_in_all_is_importable_and_listed_once():
    """Test that each name of __all__ is an attribute of the package and listed once."""
    assert len(na.__all__) == len(set(na.__all__))
    missing = [name for name in na.__all__ if not hasattr(na, name)]
    assert not missing


@pytest.mark.parametrize("name", sorted(na.__all__))
def test_every_public_name_has_a_docstring(name):
    """Test that each exported name (except the submodules' own docs) explains itself."""
    obj = getattr(na, name)
    assert (obj.__doc__ or "").strip(), f"notebook_actors.{name} has no docstring"


@pytest.mark.parametrize("name", PUBLIC_SUBMODULES)
def test_public_submodules_import(name):
    """Test that each public submodule imports, documents itself and declares __all__
    naming only what it has."""
    module = importlib.import_module(f"notebook_actors.{name}")
    assert (module.__doc__ or "").strip()
    assert module.__all__
    for attr in module.__all__:
        assert hasattr(module, attr), f"notebook_actors.{name}.__all__ lists missing {attr!r}"


def test_api_md_names_are_exported():
    """Test that every top-level name API.md promises is in __all__."""
    promised = {
        "open_nursery",
        "open_root_actor",
        "run_daemon",
        "run",
        "current_actor",
        "is_root_process",
        "Actor",
        "ActorNursery",
        "Portal",
        "Context",
        "MsgStream",
        "context",
        "stream",
        "find_actor",
        "wait_for_actor",
        "query_actor",
        "get_arbiter",
        "get_registry",
        "breakpoint",
        "pause",
        "post_mortem",
        "RemoteActorError",
        "ContextCancelled",
        "ModuleNotExposed",
        "StreamOverrun",
        "NoResult",
        "TransportClosed",
        "MultiError",
        "msg",
        "log",
        "try_set_start_method",
    }
    assert promised <= set(na.__all__), promised - set(na.__all__)


def fresh_import_modules() -> list[str]:
    """The modules a fresh interpreter holds after ``import notebook_actors``."""
    code = "import sys, json, notebook_actors; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def test_import_stays_light():
    """Test that importing the core loads neither the notebook stack, nor pdbpp, nor
    asyncio, nor multiprocessing (checked in a fresh interpreter)."""
    loaded = fresh_import_modules()
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY)
    assert not heavy, f"import notebook_actors loads {heavy}"
    ours = {m for m in loaded if m.startswith("notebook_actors.")}
    assert not {"notebook_actors.kernel_ext", "notebook_actors.widgets", "notebook_actors.debug"} & ours
