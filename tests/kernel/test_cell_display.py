"""Rich display from actors (kernel_ext/_cell_display.py, _mpl_inline.py), in a real kernel."""

from __future__ import annotations

import base64

import pytest

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png(bundle: dict) -> bytes:
    return base64.b64decode(bundle["image/png"])


@pytest.mark.parametrize(
    "show",
    ["plt.show()", "display(fig)"],
    ids=["plt.show", "display(fig)"],
)
def test_matplotlib_figures_display_as_png(kernel, show):
    """Test that plt.show() and display(fig) in an actor send the figure as image/png."""
    code = f"%%actor plotter\nimport matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot([1, 3, 2])\n{show}"
    run = kernel.run(code)
    assert run.status == "ok", run.error
    assert run.displays and png(run.displays[0]).startswith(PNG_MAGIC)
    assert "Figure size" in run.displays[0]["text/plain"]


def test_a_figure_as_last_expression_is_a_png_result(kernel):
    """Test that a figure as the cell's last expression is shown as image/png."""
    run = kernel.run("%%actor plotter\nimport matplotlib.pyplot as plt\nfig = plt.figure()\nplt.plot([1, 2])\nfig")
    assert run.status == "ok", run.error
    assert png(run.result).startswith(PNG_MAGIC)


def test_figures_drawn_in_a_cell_show_when_it_ends(kernel):
    """Test that a figure drawn without show() appears at the cell's end (the inline
    backend's flush), once, and is closed afterwards like in a local cell."""
    run = kernel.run("%%actor plotter\nimport matplotlib.pyplot as plt\nplt.plot([3, 1])\nNone")
    assert run.status == "ok", run.error
    assert len(run.displays) == 1 and png(run.displays[0]).startswith(PNG_MAGIC)
    assert kernel.value("%%actor plotter\nlen(plt.get_fignums())") == 0


def test_every_rich_repr_is_used(kernel):
    """Test that _repr_svg_/_latex_/_markdown_/_jpeg_/_png_/_mimebundle_ and
    _ipython_display_ objects render from an actor as they do locally."""
    code = (
        "%%actor rich\n"
        "class Many:\n"
        "    def _repr_svg_(self): return '<svg></svg>'\n"
        "    def _repr_latex_(self): return '$x$'\n"
        "    def _repr_markdown_(self): return '**m**'\n"
        "    def _repr_png_(self): return b'\\x89PNG\\r\\n\\x1a\\nfake'\n"
        "    def _repr_jpeg_(self): return b'\\xff\\xd8fake'\n"
        "class Bundle:\n"
        "    def _repr_mimebundle_(self, include=None, exclude=None): return {'application/x-thing': {'a': 1}}\n"
        "class Shows:\n"
        "    def _ipython_display_(self): display({'text/plain': 'shown itself'}, raw=True)\n"
        "display(Many())\ndisplay(Bundle())\nShows()"
    )
    run = kernel.run(code)
    assert run.status == "ok", run.error
    many, bundle, itself = run.displays
    assert many["image/svg+xml"] == "<svg></svg>" and many["text/latex"] == "$x$"
    assert many["text/markdown"] == "**m**" and png(many).startswith(PNG_MAGIC)
    assert base64.b64decode(many["image/jpeg"]).startswith(b"\xff\xd8")
    assert bundle["application/x-thing"] == {"a": 1}
    assert itself == {"text/plain": "shown itself"}
    assert run.result == {}


def test_live_displays_update_in_place(kernel):
    """Test display(display_id=True) + handle.update, update_display and
    clear_output(wait=True) from an actor."""
    code = (
        "%%actor animator\n"
        "from IPython.display import update_display, clear_output\n"
        "h = display({'text/plain': 'frame 0'}, raw=True, display_id=True)\n"
        "h.update({'text/plain': 'frame 1'}, raw=True)\n"
        "update_display({'text/plain': 'frame 2'}, raw=True, display_id=h.display_id)\n"
        "clear_output(wait=True)\n"
        "print('after')"
    )
    run = kernel.run(code)
    assert run.status == "ok", run.error
    kinds = [(m["msg_type"], m["content"].get("data", {}).get("text/plain")) for m in run.outputs]
    assert kinds[:3] == [
        ("display_data", "frame 0"),
        ("update_display_data", "frame 1"),
        ("update_display_data", "frame 2"),
    ]
    ids = {m["content"]["transient"]["display_id"] for m in run.outputs[:3]}
    assert len(ids) == 1
    clear = run.outputs[3]
    assert clear["msg_type"] == "clear_output" and clear["content"]["wait"] is True
    assert run.outputs[4]["content"]["text"] == "after\n"
