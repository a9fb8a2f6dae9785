"""Execute notebooks headless in a real kernel (nbclient) and print their outputs.

    python examples/run_notebook.py [NOTEBOOK ...]   # default: examples/notebooks/quickstart.ipynb

Exits non-zero if a cell fails (cells tagged ``raises-exception`` may fail).
This is what ``make demo`` runs for the notebooks.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

HERE = Path(__file__).parent
DEFAULT = [HERE / "notebooks" / "quickstart.ipynb"]
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def output_text(output: dict) -> str:
    kind = output["output_type"]
    if kind == "stream":
        return output["text"]
    if kind in ("execute_result", "display_data"):
        data = output.get("data", {})
        text = data.get("text/plain", "")
        extra = sorted(k for k in data if k != "text/plain")
        return text + (f"   [{', '.join(extra)}]" if extra else "") + "\n"
    if kind == "error":
        return _ANSI.sub("", "\n".join(output["traceback"])) + "\n"
    return ""


def run(path: Path) -> bool:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    ok = True
    try:
        client.execute()
    except CellExecutionError as exc:
        ok = False
        print(f"FAILED: {exc}", file=sys.stderr)
    print(f"=== {path}")
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        print(f"--- [{i}] {cell.source.splitlines()[0] if cell.source else ''}")
        for output in cell.get("outputs", []):
            sys.stdout.write("    " + output_text(output).replace("\n", "\n    ").rstrip(" "))
    return ok


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or DEFAULT
    results = [run(p) for p in paths]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
