"""`calibrate kernels` from aiconfigurator-core: for one system, pick per op the framework and
version whose data covers it, fit every series and write `cost_tables/<system>/`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from aicpp_opt.errors import InputError
from calibrate.aic import Package, read_table, system_yaml, versions
from calibrate.needs import Needs, shipped_needs
from calibrate.ops import SOURCES, OpSource
from calibrate.table import Measured, build_table
from calibrate.writer import dumps_plain, dumps_table, write_if_changed


@dataclass(frozen=True)
class Choice:
    """The framework and files chosen for one op, and the rows they gave."""

    framework: str
    reason: str
    files: list[Path]
    frame: pd.DataFrame


def system_spec(pkg: Package, system: str) -> dict:
    """`system.json`: the contract's SystemSpec fields from `systems/<system>.yaml`."""
    raw = system_yaml(pkg, system)
    gpu, node = raw["gpu"], raw["node"]
    return {
        "system": system,
        "memory_bytes": int(gpu["mem_capacity"]),
        "hbm_bw": float(gpu["mem_bw"]),
        "gpus_per_node": int(node["num_gpus_per_node"]),
        "nvlink_bw": float(node["intra_node_bw"]),
        "scaleout_bw": float(node["inter_node_bw"]),
        "units": "bytes, bytes/s (1e9 = GB/s) per GPU per direction",
        "source": f"aiconfigurator-core {pkg.version} systems/{system}.yaml",
    }


def _choose(pkg: Package, system: str, src: OpSource, needs: Needs, frameworks) -> Choice | None:
    """First framework (in preference order) whose newest version with rows yields rows."""
    for framework, reason in frameworks:
        candidates = [versions(pkg, system, src.family, framework, f) for f in src.files]
        if not all(candidates):
            continue
        for files in zip(*candidates, strict=False):
            frame = src.extract([read_table(f) for f in files], needs)
            if len(frame):
                return Choice(framework, reason, list(files), frame)
    return None


def measured(pkg: Package, system: str, src: OpSource, needs: Needs, backend: str | None):
    """The op's measurements in contract units, or None when no framework has rows."""
    frameworks = [f for f in src.frameworks if backend in (None, f[0])]
    choice = _choose(pkg, system, src, needs, frameworks)
    if choice is None:
        return None
    provenance = {
        "package": "aiconfigurator-core",
        "version": pkg.version,
        "file": ", ".join(pkg.relative(f) for f in choice.files),
        "filter": src.filter,
    }
    return Measured(
        op=src.op,
        backend=choice.framework,
        load_axis=src.load_axis,
        axes=list(src.axes),
        frame=choice.frame,
        covers=src.covers,
        provenance=provenance,
        selection=choice.reason,
        defaults=dict(src.defaults),
    )


def calibrate_system(
    pkg: Package, system: str, out_root: Path, backend: str | None = None
) -> list[Path]:
    """Write every table of `system` (only `backend`'s when given); returns the paths."""
    if system not in pkg.systems():
        raise InputError(
            "--system", f"unknown system {system!r}; valid: {', '.join(pkg.systems())}"
        )
    spec = system_spec(pkg, system)
    needs = shipped_needs(spec["gpus_per_node"])
    known = sorted({f for s in SOURCES for f, _ in s.frameworks})
    if backend is not None and backend not in known:
        raise InputError("--backend", f"unknown backend {backend!r}; valid: {', '.join(known)}")
    base = out_root / system
    written = [base / "system.json"]
    write_if_changed(written[0], dumps_plain(spec))
    selection: dict[str, dict] = {}
    for src in SOURCES:
        m = measured(pkg, system, src, needs, backend)
        if m is None:
            selection[src.op] = {"backend": None, "reason": "no framework has rows for it"}
            continue
        path = base / m.backend / f"{m.op}.json"
        write_if_changed(path, dumps_table(build_table(m, system)))
        written.append(path)
        selection[src.op] = {
            "backend": m.backend,
            "reason": m.selection,
            "file": m.provenance["file"],
        }
    if backend is None:
        written.append(base / "selection.json")
        write_if_changed(written[-1], dumps_plain(selection))
    return written
