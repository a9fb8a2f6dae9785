"""Everything about the package is in pyproject.toml; this only adds one file to the
wheel's root, which pyproject.toml cannot express: ``pdbpp_opt_in_notebook_actors.pth``
(see that file: it keeps pdbpp's replacement of ``pdb`` opt-in)."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = Path(__file__).parent / "packaging" / "pdbpp_opt_in_notebook_actors.pth"


class BuildWithPth(build_py):
    def run(self) -> None:
        super().run()
        shutil.copy(PTH, Path(self.build_lib) / PTH.name)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), str(Path(self.build_lib) / PTH.name)]


setup(cmdclass={"build_py": BuildWithPth})
