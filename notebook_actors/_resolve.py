"""Which function a peer's call names, and whether this actor lets peers call it.

A call names ``module:function`` (``enable_modules`` says which modules peers may
reach), or comes with the function itself, cloudpickled. Functions defined in the
program's script are found in children too: the script is loaded there as
``__mp_main__`` (as multiprocessing does).
"""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import Callable
from typing import Any

from . import _hooks
from ._exceptions import PACKAGE_DIR, ModuleNotExposed
from .msg import ActorConfig

log = logging.getLogger("notebook_actors.runtime")

#: the names the program's script goes by: ``__main__`` in the root, ``__mp_main__`` in children
SCRIPT_NAMES = frozenset({"__main__", "__mp_main__"})


def refused(text: str) -> ModuleNotExposed:
    """Log an unauthorised call (the caller gets the error boxed) and return its error."""
    log.warning("refused a call: %s", text)
    return ModuleNotExposed(text)


def trim_import_frames(exc: BaseException) -> BaseException:
    """``exc`` (an import's error) without its first frames, the runtime's and
    importlib's: its traceback starts in the module that failed."""
    tb = exc.__traceback__
    while tb is not None:
        path = tb.tb_frame.f_code.co_filename
        if not (path.startswith((PACKAGE_DIR, "<frozen ")) or "importlib" in path):
            return exc.with_traceback(tb)
        tb = tb.tb_next
    return exc


class FunctionTable:
    """The functions of enabled modules, as one actor offers them to its peers."""

    def __init__(self, config: ActorConfig, owner: tuple[str, str]) -> None:
        self.enabled = frozenset(config.enable_modules)
        self.owner = owner
        self.main_path = config.parent_main_path
        self.main_module = config.parent_main_module
        self.is_root = config.parent_addr is None

    @staticmethod
    def unpickle(ns: str, func: str, code: bytes) -> Callable[..., Any]:
        """A function sent by value (cloudpickled)."""
        import cloudpickle

        fn: Callable[..., Any] = cloudpickle.loads(code)
        if not callable(fn):
            raise TypeError(f"the code sent for {ns}:{func} is not callable")
        return fn

    def import_enabled(self) -> None:
        """Import every enabled module now, as the actor starts (tractor does too), so
        that one that fails to import fails the start, not some later call. The
        program's script stays lazy: a child loads it only if a call needs it.

        Raises:
            Exception: what the first failing import raised (``ModuleNotFoundError``,
                ``SyntaxError``, an error in its body), noting which entry it was.
        """
        import importlib

        for name in sorted(self.enabled - SCRIPT_NAMES):
            try:
                importlib.import_module(name)
            except Exception as exc:
                exc.add_note(f"(importing {name!r}, one of the enable_modules of actor {self.owner})")
                raise

    def lookup(self, ns: str, func: str) -> Callable[..., Any]:
        """``ns:func`` (``func`` may be dotted), if ``ns`` is enabled here.

        Raises:
            ModuleNotExposed: ``ns`` (or a module on the way to ``func``) is not enabled.
            AttributeError: ``ns`` has no such function.
            TypeError: what ``func`` names is not callable.
        """
        if ns in SCRIPT_NAMES and SCRIPT_NAMES & self.enabled:
            # one script, two names: a child loaded its parent's __main__ as __mp_main__
            ns = "__main__"
        elif ns not in self.enabled and not _hooks.is_runtime_module(ns):
            raise refused(f"module {ns!r} is not enabled in actor {self.owner}; pass enable_modules=[{ns!r}]")
        obj: Any = self._import(ns)
        for part in func.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                raise AttributeError(f"module {ns!r} in actor {self.owner} has no function {func!r}")
            if inspect.ismodule(obj) and obj.__name__ not in self.enabled:
                # `calc:os.system` must not reach what `calc` merely imports
                raise refused(
                    f"{ns}:{func} reaches into module {obj.__name__!r}, which is not enabled in actor "
                    f"{self.owner}; call it by its own module and pass enable_modules=[{obj.__name__!r}]"
                )
        if not callable(obj):
            raise TypeError(f"{ns}:{func} in actor {self.owner} is not callable")
        fn: Callable[..., Any] = obj
        return fn

    def _import(self, ns: str) -> Any:
        # a grandchild is asked for "__mp_main__": its parent loaded the script under that name
        if ns in SCRIPT_NAMES:
            return self._main_module()
        mod = sys.modules.get(ns)  # what import_module returns for a loaded module, faster
        if mod is not None:
            return mod
        import importlib

        return importlib.import_module(ns)

    def _main_module(self) -> Any:
        """The root's ``__main__`` script, loaded here as ``__mp_main__``."""
        mod = sys.modules.get("__mp_main__")
        if mod is not None:
            return mod
        if self.main_module is not None:
            return self._run_main("module", self.main_module)
        if self.main_path is None:
            main = sys.modules["__main__"]
            if getattr(main, "__file__", None) and self.is_root:
                return main
            raise ModuleNotExposed(f"actor {self.owner} cannot import its parent's __main__ (no script path)")
        return self._run_main("path", self.main_path)

    def _run_main(self, how: str, where: str) -> Any:
        import runpy
        import types

        mod = types.ModuleType("__mp_main__")
        sys.modules["__mp_main__"] = mod
        try:
            if how == "module":  # `python -m pkg.mod`: by name, so relative imports work
                mod.__dict__.update(runpy.run_module(where, run_name="__mp_main__"))
            else:
                mod.__file__ = where
                mod.__dict__.update(runpy.run_path(where, run_name="__mp_main__"))
        except Exception as exc:
            del sys.modules["__mp_main__"]
            raise RuntimeError(
                f"actor {self.owner} could not load its parent's script {where} "
                f"(to find a function defined there): {type(exc).__name__}: {exc}. Every child "
                "re-runs the script's top level: put the program under "
                "`if __name__ == '__main__':`"
            ) from exc
        except BaseException:
            del sys.modules["__mp_main__"]
            raise
        return mod
