"""matplotlib's inline backend for notebook actors (``MPLBACKEND`` in every one).

It is IPython's own inline backend (``matplotlib_inline``), with two differences that
an actor needs because no IPython shell runs there: its ``display`` sends figures to
the running cell, and interactive mode is on (what IPython's ``%matplotlib inline``
turns on), so a figure drawn in a cell is shown when the cell ends. ``plt.show()``, a
figure as the last expression and ``display(fig)`` then behave as in a local cell.
"""

from __future__ import annotations

import matplotlib
from matplotlib_inline.backend_inline import (
    FigureCanvas,
    flush_figures,
    new_figure_manager,
    new_figure_manager_given_figure,
    show,
)

from . import _cell_display

__all__ = ["FigureCanvas", "flush_figures", "new_figure_manager", "new_figure_manager_given_figure", "show"]

_cell_display.patch_ipython()  # backend_inline bound IPython's display at its import
matplotlib.interactive(True)
