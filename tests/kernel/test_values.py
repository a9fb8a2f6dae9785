"""Data between the notebook and its actors, in a real kernel: ``%actor push`` and
``%actor pull`` of a DataFrame, a numpy array and an instance of a class defined in a
cell; a DataFrame as a cell's last expression renders as its HTML table, and only its
display comes back (the value stays in the actor); a cell ending in ``;`` shows and
sends back nothing of its value."""

from __future__ import annotations


def test_push_and_pull_a_dataframe(kernel):
    """Test that a DataFrame pushed to an actor is changed there, shown as an HTML
    table as the cell's value, and pulled back equal to the kernel-side expectation."""
    kernel.run("import pandas as pd, numpy as np\ndf = pd.DataFrame({'x': np.arange(5), 'y': list('abcde')})")
    assert kernel.run("%actor push frames df").status == "ok"
    run = kernel.run("%%actor frames\ndf['z'] = df['x'] * 10\ndf")
    assert run.status == "ok"
    html = run.result.get("text/html", "")
    assert "<table" in html and "<th>z</th>" in html.replace(' style="text-align: right;"', "")
    assert kernel.run("%actor pull frames df").status == "ok"
    assert kernel.value("list(df.columns), df['z'].tolist()") == (["x", "y", "z"], [0, 10, 20, 30, 40])
    # the cell's value stayed in the actor: only its display came back
    assert kernel.value("%%actor frames\ntype(_).__name__") == "DataFrame"


def test_push_and_pull_an_array_and_a_cell_class(kernel):
    """Test that a large numpy array and an instance of a class defined in a kernel
    cell (it travels by value) go to an actor and come back."""
    kernel.run(
        "import numpy as np\n"
        "class Box:\n"
        "    def __init__(self, v):\n"
        "        self.v = v\n"
        "    def double(self):\n"
        "        return Box(self.v * 2)\n"
        "arr = np.arange(4_000_000, dtype=np.float32)\n"
        "box = Box(21)"
    )
    assert kernel.run("%actor push calc arr box").status == "ok"
    kernel.run("%%actor calc\nsummed = float(arr.sum())\nbox2 = box.double()")
    assert kernel.run("%actor pull calc summed box2").status == "ok"
    assert kernel.value("summed == float(arr.sum()), box2.v, type(box2).__name__") == (True, 42, "Box")


def test_a_quiet_cell_sends_nothing_back(kernel):
    """Test that an ``%%actor`` cell whose last expression ends in ``;`` (IPython's
    rule) shows no result and leaves ``_`` as it was, while the same cell without it
    shows the value; the value is still in the actor's namespace to pull."""
    assert kernel.run("%%actor quiet\nimport numpy as np\nbig = np.ones(5_000_000)\n'first'").status == "ok"
    run = kernel.run("%%actor quiet\nbig * 2;  # shown only without the semicolon")
    assert run.status == "ok" and run.result == {}
    assert kernel.value("%%actor quiet\n_") == "first"
    assert kernel.value("%%actor quiet\nint(big.sum())") == 5_000_000
    assert kernel.run("%actor pull quiet big").status == "ok"
    assert kernel.value("big.shape") == (5_000_000,)
