"""Build hook (all metadata lives in pyproject.toml): a wheel carries the shipped data,
``cost_tables/``, ``models/`` and ``instances/``, as ``aicpp_opt/_data/``, where an installed
aicpp-opt looks first (``aicpp_opt/paths.py``). The folders stay at the top of the checkout, which
an editable install reads directly, so it copies nothing."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

DATA = ("cost_tables", "models", "instances")


class BuildPyWithData(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        target = Path(self.build_lib) / "aicpp_opt" / "_data"
        for name in DATA:
            shutil.copytree(Path(__file__).parent / name, target / name, dirs_exist_ok=True)


setup(cmdclass={"build_py": BuildPyWithData})
