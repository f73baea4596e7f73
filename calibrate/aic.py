"""Locating and reading the aiconfigurator-core package's measurements: parquet tables under
`systems/data/<system>/<family>/<framework>/<version>/` and system specs `systems/<system>.yaml`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pandas as pd
import yaml

from aicpp_opt.errors import InputError

PACKAGE = "aiconfigurator-core"


@dataclass(frozen=True)
class Package:
    """An installed aiconfigurator-core: its root folder and version."""

    root: Path
    version: str

    @property
    def data(self) -> Path:
        return self.root / "systems" / "data"

    def systems(self) -> list[str]:
        return sorted(p.name for p in self.data.iterdir() if p.is_dir())

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()


def find_package() -> Package:
    """The installed package (calibration only; the runtime never imports it)."""
    try:
        import aiconfigurator_core
    except ImportError as err:
        raise InputError(
            "--source", f"{PACKAGE} is not installed: pip install '{PACKAGE}==0.12.0'"
        ) from err
    return Package(Path(aiconfigurator_core.__file__).parent, metadata.version(PACKAGE))


def version_key(version: str) -> tuple:
    """Natural order of version folder names (0.5.6.post2 < 0.5.14, 1.3.0rc10 < 1.3.0rc20)."""
    parts = re.findall(r"\d+|[a-z]+", version.lower())
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts)


def versions(pkg: Package, system: str, family: str, framework: str, filename: str) -> list[Path]:
    """Files `filename` of one framework, newest version first."""
    base = pkg.data / system / family / framework
    if not base.is_dir():
        return []
    found = [d / filename for d in base.iterdir() if (d / filename).is_file()]
    return sorted(found, key=lambda p: version_key(p.parent.name), reverse=True)


def read_table(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path)


def system_yaml(pkg: Package, system: str) -> dict:
    path = pkg.root / "systems" / f"{system}.yaml"
    if not path.is_file():
        raise InputError(
            "--system", f"unknown system {system!r}; valid: {', '.join(pkg.systems())}"
        )
    return yaml.safe_load(path.read_text())
