"""Kernel fixtures: one real kernel per test module, clean between tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _kernel import Kernel


@pytest.fixture(scope="module")
def module_kernel():
    """A kernel with the extension loaded, shared by a module's tests."""
    kernel = Kernel(load=True)
    yield kernel
    kernel.shutdown()


@pytest.fixture
def kernel(module_kernel):
    """The module's kernel; every actor a test spawned is stopped after it."""
    yield module_kernel
    run = module_kernel.run("%actor killall")
    assert run.status == "ok", run.error
