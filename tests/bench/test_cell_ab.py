"""bench/cell_ab.py: the other tree is laid out as an installed package would be."""

from __future__ import annotations

import subprocess
import sys

from bench.cell_ab import _export


def test_an_exported_revision_imports_as_the_package_with_its_wings(tmp_path):
    """Test that a revision exported for the A/B is what a fresh interpreter imports,
    the kernel extension inside it (not this checkout's editable install)."""
    site = _export("HEAD", tmp_path)
    code = "import notebook_actors, notebook_actors.kernel_ext as k; print(notebook_actors.__file__); print(k.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    package, wing = out.stdout.split()
    assert package == str(site / "notebook_actors" / "__init__.py")
    assert wing == str(site / "notebook_actors" / "kernel_ext" / "__init__.py")
