"""Rich display in a notebook actor: IPython's formatters without an IPython shell.

An actor has no ``InteractiveShell`` (IPython's ``display()`` would just ``print``), so
this module gives it the same machinery a kernel uses: one ``DisplayFormatter`` (all of
``_repr_png_``/``_svg_``/``_jpeg_``/``_latex_``/``_markdown_``/``_html_``/``_json_``,
``_repr_mimebundle_`` and ``_ipython_display_``), matplotlib figures registered with it
as IPython's inline backend registers them, and ``display``/``update_display``/
``clear_output`` that send :mod:`._protocol` messages to the running cell.

IPython is imported only when a cell shows something that needs it.
"""

from __future__ import annotations

import base64
import importlib.abc
import importlib.util
import sys
import types
import uuid
from collections.abc import Callable
from typing import Any

from ._protocol import Clear, Display

#: Where display events go (set by the cell runtime: the running cell's output).
Emit = Callable[[Any], None]
_emit: Emit = lambda event: None  # noqa: E731 - replaced by install()
_formatter: Any = None
#: The matplotlib backend a notebook actor uses unless the user chose another.
INLINE_BACKEND = "module://notebook_actors.kernel_ext._mpl_inline"


def install(emit: Emit) -> None:
    """Send display events through ``emit``; IPython's display functions become ours,
    now if IPython is loaded, else when it is imported (once per process)."""
    global _emit
    _emit = emit
    if "IPython.core.display_functions" in sys.modules:
        patch_ipython()
    else:
        sys.meta_path.insert(0, _PatchOnImport())


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Patches ``IPython.core.display_functions`` right after it is first imported, so
    every later ``from IPython.display import display`` binds ours."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != "IPython.core.display_functions":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_patch(module: types.ModuleType) -> None:
            exec_module(module)
            _patch_module(module)

        spec.loader.exec_module = exec_and_patch  # type: ignore[method-assign]
        return spec


def formatter() -> Any:
    """This actor's one ``DisplayFormatter`` (IPython imported on first use)."""
    global _formatter
    if _formatter is None:
        from IPython.core.formatters import DisplayFormatter

        _formatter = DisplayFormatter()
        _register_figure_formats(_formatter)
    return _formatter


def _register_figure_formats(fmt: Any) -> None:
    """matplotlib figures render as the inline backend's formats (png by default)."""
    from functools import partial

    try:
        from matplotlib_inline.backend_inline import InlineBackend
    except ImportError:
        formats: set[str] = {"png"}
        kwargs: dict[str, Any] = {}
    else:
        backend = InlineBackend.instance()
        formats, kwargs = set(backend.figure_formats), dict(backend.print_figure_kwargs)
    from IPython.core import pylabtools

    printers = {
        "png": ("image/png", partial(pylabtools.print_figure, fmt="png", **kwargs)),
        "retina": ("image/png", partial(pylabtools.retina_figure, **kwargs)),
        "jpeg": ("image/jpeg", partial(pylabtools.print_figure, fmt="jpg", **kwargs)),
        "svg": ("image/svg+xml", partial(pylabtools.print_figure, fmt="svg", **kwargs)),
    }
    for name in formats:
        mime, printer = printers.get("jpeg" if name == "jpg" else name, (None, None))
        if mime is not None:
            fmt.formatters[mime].for_type_by_name("matplotlib.figure", "Figure", printer)


def _needs_formatter(obj: Any) -> bool:
    if "IPython" in sys.modules or type(obj).__module__.startswith("matplotlib"):
        return True
    return any(name.startswith(("_repr_", "_ipython_display_")) for name in dir(type(obj)))


def mime_bundle(obj: Any, include: Any = None, exclude: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(data, metadata)`` for ``obj`` as a kernel would show it.

    Empty when ``_ipython_display_`` displayed the object itself. A broken ``_repr_*_``
    does not lose the value: its ``repr`` is shown with the error.
    """
    if not _needs_formatter(obj):
        return {"text/plain": _safe_repr(obj)}, {}
    try:
        data, metadata = formatter().format(obj, include=include, exclude=exclude)
    except Exception as exc:
        return {"text/plain": f"{_safe_repr(obj)}  (rich repr failed: {exc!r})"}, {}
    return _jsonable(data), _jsonable(metadata)


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    """Binary payloads (a PNG) as base64 text, as the Jupyter protocol carries them."""
    return {k: base64.b64encode(v).decode() if isinstance(v, bytes) else v for k, v in d.items()}


def _safe_repr(obj: Any) -> str:
    try:
        return repr(obj)
    except Exception as exc:
        return f"<{type(obj).__name__} object; repr() raised {exc!r}>"


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            into[key].update(value)
        else:
            into[key] = value


def display(
    *objs: Any,
    include: Any = None,
    exclude: Any = None,
    metadata: dict[str, Any] | None = None,
    transient: dict[str, Any] | None = None,
    display_id: Any = None,
    raw: bool = False,
    clear: bool = False,
    update: bool = False,
    **_: Any,
) -> Any:
    """Show objects in the cell running this actor's code (IPython's ``display``).

    ``display_id=True`` makes a new id and returns a handle to update that output;
    ``raw=True`` takes each object as a ready mime bundle.
    """
    transient = dict(transient or {})
    if display_id:
        transient["display_id"] = uuid.uuid4().hex if display_id is True else str(display_id)
    if update and "display_id" not in transient:
        raise TypeError("update_display needs a display_id")
    if not objs and display_id:
        objs, raw = ({},), True  # an empty output to fill later
    if clear:
        _emit(Clear(wait=True))
    for obj in objs:
        if raw:
            data, md = dict(obj), {}
        else:
            data, md = mime_bundle(obj, include, exclude)
            if not data:  # _ipython_display_ showed it
                continue
        _merge(md, dict(metadata or {}))
        _emit(Display(data=data, metadata=md, transient=transient, update=update))
    if display_id:
        from IPython.display import DisplayHandle

        return DisplayHandle(transient["display_id"])
    return None


def update_display(obj: Any, *, display_id: Any, **kwargs: Any) -> None:
    """Replace the output shown under ``display_id``."""
    kwargs["update"] = True
    display(obj, display_id=display_id, **kwargs)


def clear_output(wait: bool = False) -> None:
    """Clear the cell's output (``wait``: when the next output arrives)."""
    _emit(Clear(wait=wait))


_PATCHED = ("IPython.core.display_functions", "IPython.display", "IPython", "matplotlib_inline.backend_inline")


def patch_ipython() -> None:
    """Make IPython's ``display`` functions (imported or not yet) ours in this actor.

    Modules that did ``from IPython.display import display`` hold their own binding:
    the ones that matter (matplotlib's inline backend) are patched too.
    """
    for name in _PATCHED:
        mod = sys.modules.get(name)
        if mod is not None:
            _patch_module(mod)


def _patch_module(mod: types.ModuleType) -> None:
    for fn in (display, update_display, clear_output):
        if getattr(mod, fn.__name__, fn) is not fn:
            setattr(mod, fn.__name__, fn)


def flush_figures() -> None:
    """At the end of a cell: show the figures it drew, as the inline backend does locally."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None or pyplot.get_backend() != INLINE_BACKEND:
        return
    from . import _mpl_inline

    _mpl_inline.flush_figures()
