"""Install-time tools: ``python -m notebook_actors._install --disable-pdb-hijack``."""

from __future__ import annotations

import os
import sys

_HIJACK_PTH = "pdbpp_hijack_pdb.pth"


def disable_pdb_hijack(site_dirs: list[str] | None = None) -> list[str]:
    """Make pdbpp's ``.pth`` file opt-in (``PDBPP_HIJACK_PDB=1``) instead of opt-out.

    Installing pdbpp drops ``pdbpp_hijack_pdb.pth`` into site-packages; it makes
    ``import pdb`` return pdb++ for *every* program of the environment, which breaks
    IPython's ``%debug``. The runtime imports ``pdbpp`` by name and needs no hijack.
    A wheel install needs none of this: the wheel ships ``pdbpp_opt_in_notebook_actors.pth``
    (see ``packaging/``), which undoes the hijack at startup unless ``PDBPP_HIJACK_PDB`` is
    set. ``make`` still runs this after an editable install. Returns the files changed.
    """
    import site
    import sysconfig

    dirs = site_dirs or [*site.getsitepackages(), sysconfig.get_paths()["purelib"]]
    changed = []
    for directory in dict.fromkeys(dirs):
        path = os.path.join(directory, _HIJACK_PTH)
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            continue
        new = text.replace("os.environ.get('PDBPP_HIJACK_PDB', 1)", "os.environ.get('PDBPP_HIJACK_PDB', 0)")
        if new != text:
            # a new file, not an edit in place: installers (uv) hardlink site-packages
            # files to their cache, and every venv made from it would change too
            with open(path + ".tmp", "w") as f:
                f.write(new)
            os.replace(path + ".tmp", path)
            changed.append(path)
    return changed


if __name__ == "__main__":
    if sys.argv[1:] != ["--disable-pdb-hijack"]:
        sys.exit("usage: python -m notebook_actors._install --disable-pdb-hijack")
    for changed_path in disable_pdb_hijack():
        print(f"pdbpp no longer replaces `pdb` by default (opt in with PDBPP_HIJACK_PDB=1): {changed_path}")
