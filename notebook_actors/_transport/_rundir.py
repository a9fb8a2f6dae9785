"""The per-user private directory that holds this user's socket files.

Every program of one user must find the same directory with no configuration (the
registry's socket lives there), and no other user may be able to put anything in
it or stop us from using it. So the candidates are tried in a fixed order and the
first one that is safe wins:

1. ``$XDG_RUNTIME_DIR/notebook_actors`` (the login session's private directory),
2. ``<tmp>/notebook_actors-<uid>``, then ``<tmp>/notebook_actors-<uid>.1`` … ``.4``,
3. a fresh ``mkdtemp`` directory (discovery between programs is then lost, and a
   warning says so).

A candidate is safe when it is a real directory (not a symlink), owned by this user,
with no access for group or others. A path another user created (or one with a loose
mode) is refused with a warning and the next candidate is tried: a squatter can
cost us the shared default path, never the start-up.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from pathlib import Path

log = logging.getLogger("notebook_actors.transport")

_FALLBACKS = 4
_warned: set[str] = set()


def _candidates() -> list[Path]:
    uid = os.getuid()
    found: list[Path] = []
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and _owned_private(Path(xdg), allow_group=False):
        found.append(Path(xdg) / "notebook_actors")
    tmp = Path(tempfile.gettempdir())
    found.append(tmp / f"notebook_actors-{uid}")
    found.extend(tmp / f"notebook_actors-{uid}.{n}" for n in range(1, _FALLBACKS + 1))
    return found


def _owned_private(path: Path, *, allow_group: bool = False) -> bool:
    """True when ``path`` is a real directory of ours that others cannot enter."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    mask = 0o007 if allow_group else 0o077
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & mask


def _make_private(path: Path) -> bool:
    """Create ``path`` with mode 0700, or accept it if it already is ours and private."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return False
    if _owned_private(path):
        return True
    _warn_refused(path)
    return False


def _warn_refused(path: Path) -> None:
    if str(path) in _warned:
        return
    _warned.add(str(path))
    try:
        st = os.lstat(path)
        what = f"owner uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):o}" + (
            ", a symlink" if stat.S_ISLNK(st.st_mode) else ""
        )
    except OSError as exc:
        what = str(exc)
    log.warning(
        "not using %s for socket files (%s): it must be a directory of yours with mode 0700; trying the next one",
        path,
        what,
    )


_fallback: Path | None = None


def runtime_dir() -> Path:
    """The first safe candidate directory (see module docs), created if needed."""
    global _fallback
    for path in _candidates():
        if _make_private(path):
            return path
    if _fallback is None or not _owned_private(_fallback):
        _fallback = Path(tempfile.mkdtemp(prefix=f"notebook_actors-{os.getuid()}-"))
        log.warning(
            "every shared socket directory of yours is taken by someone else; using %s: "
            "this program will not find your other programs' actors by default",
            _fallback,
        )
    return _fallback


def default_registry_addr() -> str:
    """This user's registry on this host: a Unix socket in :func:`runtime_dir`."""
    return f"uds:{runtime_dir() / 'registry.sock'}"
