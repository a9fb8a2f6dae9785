"""Habits of the core's code that review alone does not keep (docs/design.md):
objects use each other's methods, not each other's private fields."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "notebook_actors"

#: the reaches left, each with its reason (docs/design.md, "One call, one state
#: object"): the guest run filled in by the function that makes it, the launcher's
#: own classes, pdbpp's internals, markers our code sets on foreign objects, the
#: nursery's module-level helpers. Lower it when you remove one; never raise it.
BUDGET = 12


def private_reaches(source: str, where: str) -> list[str]:
    """``x._name`` in ``source`` where ``x`` is not self/cls/super() nor a module."""
    tree = ast.parse(source)
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            modules |= {a.asname or a.name for a in node.names}
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")):
            continue
        owner = node.value
        if isinstance(owner, ast.Name) and (owner.id in ("self", "cls") or owner.id in modules):
            continue
        if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super":
            continue
        found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_private_field_reaches_stay_within_budget():
    """Test that the core reads or writes another object's private field at most
    BUDGET times (157 before the call-state refactor)."""
    reaches = [
        reach
        for path in sorted(CORE.rglob("*.py"))
        for reach in private_reaches(path.read_text(), str(path.relative_to(CORE.parent)))
    ]
    assert len(reaches) <= BUDGET, "new reaches into another object's private field:\n" + "\n".join(reaches)


def test_the_counter_sees_a_reach():
    """Test that the counter finds ``other._field`` and ignores ``self._field`` and a
    module's private name (so the budget test can fail)."""
    source = "import os\nclass A:\n    def f(self, other):\n        return self._a, other._b, os._exit\n"
    assert private_reaches(source, "sample.py") == ["sample.py:4: other._b"]


WINGS = [CORE.parent / "kernel_ext", CORE.parent / "widgets"]


def imported_names(source: str) -> list[str]:
    """Every module ``source`` imports (``from a.b import c`` gives ``a.b`` and ``a.b.c``)."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    return names


def wing_imports_breaking_the_rules(source: str, where: str) -> list[str]:
    """Imports of a wing that import-linter cannot see (it lints the checkout, where
    the wings are not under ``notebook_actors/``): a private module of the installed
    wings, or the kernel extension from the widget."""
    bad = []
    for name in imported_names(source):
        parts = name.split(".")
        private = parts[:1] == ["notebook_actors"] and any(p.startswith("_") for p in parts[2:])
        backwards = where.startswith("widgets") and name.startswith("notebook_actors.kernel_ext")
        if (private and parts[1:2] in (["widgets"], ["kernel_ext"])) or backwards:
            bad.append(f"{where}: import of {name}")
    return bad


def test_the_wings_import_no_private_module_of_the_installed_package():
    """Test that kernel_ext and widgets use each other's package faces only, and the
    widget never imports the kernel extension (import-linter checks the core's)."""
    bad = [
        problem
        for wing in WINGS
        for path in sorted(wing.rglob("*.py"))
        for problem in wing_imports_breaking_the_rules(path.read_text(), str(path.relative_to(CORE.parent)))
    ]
    assert not bad, "\n".join(bad)


def test_the_wing_check_sees_a_private_import_and_a_backward_one():
    """Test that the check above finds what it looks for."""
    assert wing_imports_breaking_the_rules("from notebook_actors.widgets._tree_widget import x", "kernel_ext/a.py")
    assert wing_imports_breaking_the_rules("import notebook_actors.kernel_ext", "widgets/a.py")
    assert not wing_imports_breaking_the_rules("from notebook_actors.widgets import x", "kernel_ext/a.py")
