"""The example notebooks execute headless in a real kernel (nbclient)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).parents[2] / "examples" / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def execute(path: Path):
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb


def outputs(nb) -> list[dict]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def test_quickstart_shows_what_it_promises():
    """Test that the quickstart runs and shows nesting, streaming, a numpy/pandas round
    trip, errors and zombie safety."""
    nb = execute(NOTEBOOK_DIR / "quickstart.ipynb")
    text = "".join(
        o.get("text", "") + o.get("data", {}).get("text/plain", "") + "\n".join(o.get("traceback", []))
        for o in outputs(nb)
    )
    assert "root actor: kernel" in text
    assert "runs under worker" in text
    assert "received 25" in text and "tick 4" in text
    assert "ZeroDivisionError in actor 'worker'" in text and "return a / b" in text
    assert "worker alive: False | helper alive: False" in text
    # numpy/pandas round trip: pushed, changed in the actor, shown as a table, pulled back
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs(nb))
    assert "<table" in html and "change" in html
    assert "'n': 2000000" in text and "[nan, 1.0, 1.0, 1.0, 1.0]" in text
    assert "((2000000,), 1.0)" in text


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.stem != "quickstart"], ids=lambda p: p.stem)
def test_notebook_executes(path):
    """Test that every cell of the notebook runs (cells tagged raises-exception may fail)."""
    nb = execute(path)
    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code" and "raises-exception" not in c.metadata.get("tags", [])
        for o in c.get("outputs", [])
        if o["output_type"] == "error"
    ]
    assert errors == []


def test_the_cells_notebook_shows_what_it_promises():
    """Test that examples/notebooks/cells.ipynb shows live lines, tqdm's \\r bar, a png
    from plt.show(), rich reprs, a live display, labelled several-actor output, the
    stack of a stuck actor naming its function, and a trimmed user traceback."""
    nb = execute(NOTEBOOK_DIR / "cells.ipynb")
    outs = outputs(nb)
    text = "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in outs)
    streams = [o["text"] for o in outs if o["output_type"] == "stream"]
    assert [s for s in streams if s.startswith("step ")] == [f"step {i}\n" for i in range(5)]
    assert sum(s.startswith("\r") for s in streams) >= 10
    assert any("image/png" in o.get("data", {}) for o in outs)
    assert any("rendered in the actor" in o.get("data", {}).get("text/html", "") for o in outs)
    frames = [o["data"]["text/markdown"] for o in outs if "frame" in o.get("data", {}).get("text/markdown", "")]
    assert frames == ["frame 5 of 5"]  # one output, updated in place
    assert "[w1] pid" in text and "[w3] Out:" in text and "('w2', 'W2')" in text
    assert "in crunch_forever" in text
    [error] = [o for o in outs if o["output_type"] == "error"]
    tb = "\n".join(error["traceback"])
    assert "return a / b" in tb and "trio" not in tb and "kernel_ext" not in tb
