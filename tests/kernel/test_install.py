"""A user's install: the built wheel into a fresh venv (``pip install
'notebook_actors[notebook]'``), then a real kernel of that venv. pdbpp, a dependency,
replaces the stdlib ``pdb`` for the whole environment through its own ``.pth`` file;
ours must keep that opt-in there, or IPython's ``%debug`` fails in every kernel of the
environment (with or without our extension)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from _kernel import CELL_TIMEOUT, Kernel

ROOT = Path(__file__).resolve().parents[2]
#: Hang guard of one build or install step (not a timing assertion).
STEP_TIMEOUT = 600

pytestmark = pytest.mark.skipif(shutil.which("uv") is None, reason="needs uv to build the wheel and the venv")


def _pinned(name: str) -> str:
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.lower().startswith(f"{name}=="):
            return line.strip()
    raise AssertionError(f"{name} is not pinned in constraints.txt")


def _uv(*args: str, cwd: Path = ROOT) -> None:
    done = subprocess.run(["uv", *args], cwd=cwd, capture_output=True, text=True, timeout=STEP_TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory):
    """(the built wheel, the venv's python) with notebook_actors[notebook] from the wheel."""
    tmp = tmp_path_factory.mktemp("install")
    _uv("build", "--wheel", "-o", str(tmp / "dist"), str(ROOT))
    shutil.rmtree(ROOT / "build", ignore_errors=True)
    [wheel] = (tmp / "dist").glob("notebook_actors-*.whl")
    venv = tmp / "venv"
    _uv("venv", "-q", "-p", f"{sys.version_info.major}.{sys.version_info.minor}", str(venv))
    python = venv / "bin" / "python"
    _uv("pip", "install", "-q", "-p", str(python), "-c", str(ROOT / "constraints.txt"), f"{wheel}[notebook]")
    # pdbpp exactly as its authors ship it (a cached copy may have been edited in place)
    _uv("pip", "install", "-q", "-p", str(python), "--no-cache", "--reinstall-package", "pdbpp", _pinned("pdbpp"))
    return wheel, python


def _site_packages(python: Path) -> Path:
    out = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        text=True,
        capture_output=True,
        check=True,
    )
    return Path(out.stdout.strip())


def test_the_wheel_ships_the_widget_and_the_pdb_guard(fresh_venv):
    """Test that the wheel holds the widget's JS and CSS and our .pth at its root."""
    wheel, _ = fresh_venv
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"notebook_actors/widgets/tree.js", "notebook_actors/widgets/tree.css"} <= names
    assert "pdbpp_opt_in_notebook_actors.pth" in names


def test_pdb_stays_the_stdlibs_unless_asked(fresh_venv):
    """Test that `import pdb` is the stdlib's in the fresh venv although pdbpp's hijack
    is installed and on by default there; PDBPP_HIJACK_PDB=1 still opts in."""
    _, python = fresh_venv
    hijack = (_site_packages(python) / "pdbpp_hijack_pdb.pth").read_text()
    assert "os.environ.get('PDBPP_HIJACK_PDB', 1)" in hijack  # the hijack really is there
    code = "import pdb; print(pdb.__file__)"
    env = {k: v for k, v in __import__("os").environ.items() if k != "PDBPP_HIJACK_PDB"}
    plain = subprocess.run([str(python), "-c", code], env=env, capture_output=True, text=True, check=True)
    assert not plain.stdout.strip().endswith("pdbpp.py"), plain.stdout
    opted = subprocess.run(
        [str(python), "-c", code], env={**env, "PDBPP_HIJACK_PDB": "1"}, capture_output=True, text=True, check=True
    )
    assert opted.stdout.strip().endswith("pdbpp.py"), opted.stdout


@pytest.fixture
def venv_kernel(fresh_venv, tmp_path, monkeypatch):
    """A kernel of the fresh venv (a kernelspec of its own on JUPYTER_PATH)."""
    _, python = fresh_venv
    spec = tmp_path / "jupyter" / "kernels" / "fresh"
    spec.mkdir(parents=True)
    argv = [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "fresh", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.delenv("PDBPP_HIJACK_PDB", raising=False)
    kernel = Kernel(kernel_name="fresh", cwd=str(tmp_path))  # not the checkout: its package is not on the path
    yield kernel
    kernel.shutdown()


def test_debug_load_ext_and_an_actor_cell_work_in_the_fresh_venv(venv_kernel):
    """Test that IPython's %debug works in a kernel of the fresh venv (no pdbpp in pdb),
    then that %load_ext notebook_actors and an %%actor cell work there too."""
    assert venv_kernel.run("def f():\n    x = 41\n    1 / 0\nf()").status == "error"
    msg_id = venv_kernel.submit("%debug", allow_stdin=True)
    prompt = venv_kernel.answer_prompt("p x + 1")
    assert "ipdb>" in prompt["prompt"]
    venv_kernel.answer_prompt("q")
    run = venv_kernel.collect(msg_id, timeout=CELL_TIMEOUT)
    assert run.status == "ok", run.error
    assert "42" in run.stream("stdout")
    loaded = venv_kernel.run("%load_ext notebook_actors")
    assert loaded.status == "ok", loaded.error
    prefix = venv_kernel.value("import sys, notebook_actors\n(sys.prefix, notebook_actors.__file__)")
    assert prefix[1].startswith(prefix[0])  # the installed wheel, not the checkout
    assert venv_kernel.value("%%actor fresh\nimport sys\nsys.prefix") == prefix[0]
    assert venv_kernel.value("%%actor fresh\n6 * 7") == 42
    assert venv_kernel.run("%actor stop").status == "ok"
