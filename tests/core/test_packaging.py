"""The package metadata ships every subpackage (a wheel built from pyproject.toml's
explicit list would otherwise lack one: `import notebook_actors.debug` fails there)."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_subpackage_is_listed_in_pyproject():
    """Test that each folder with an __init__.py under notebook_actors/ is a package
    setuptools will put in the wheel."""
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(init.parent.relative_to(REPO).parts) for init in (REPO / "notebook_actors").rglob("__init__.py")}
    assert found - listed == set()
