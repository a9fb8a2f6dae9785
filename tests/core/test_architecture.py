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
