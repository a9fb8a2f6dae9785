"""The distribution example notebook in a real kernel: an actor on a test host, and an
``%%actor --host`` cell whose live output reaches the notebook only through the
socket its launcher forwarded (the kernel's output socket is hidden on that host)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from notebook_actors.testing._hosts import can_make_test_hosts

NOTEBOOK = Path(__file__).parents[2] / "examples" / "notebooks" / "distribution.ipynb"


def test_the_distribution_notebook_shows_output_from_the_far_host():
    """Test that every promise of the notebook shows in its outputs."""
    why_not = can_make_test_hosts()
    if why_not:
        pytest.skip(why_not)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    ).execute()
    text = "".join(
        o.get("text", "") + o.get("data", {}).get("text/plain", "") + "\n".join(o.get("traceback", []))
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
    )
    assert "on gpu1 raised ZeroDivisionError" in text
    assert "trainer runs in net:" in text  # printed in the far actor, shown live here
    assert "HOST" in text and "gpu1  idle" in text
