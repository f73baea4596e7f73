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
    gpu, node, misc = raw["gpu"], raw["node"], raw["misc"]
    return {
        "system": system,
        "memory_bytes": int(gpu["mem_capacity"]),
        "hbm_bw": float(gpu["mem_bw"]),
        "gpus_per_node": int(node["num_gpus_per_node"]),
        "nvlink_bw": float(node["intra_node_bw"]),
        "scaleout_bw": float(node["inter_node_bw"]),
        "runtime_reserve_bytes": int(misc["other_mem"]),
        "nccl_mem_bytes": {str(k): int(v) for k, v in sorted(misc["nccl_mem"].items())},
        "units": "bytes, bytes/s (1e9 = GB/s) per GPU per direction",
        "source": f"aiconfigurator-core {pkg.version} systems/{system}.yaml",
        "reserve_source": f"aiconfigurator-core {pkg.version} systems/{system}.yaml misc.other_mem "
        "(runtime/framework memory per GPU) and misc.nccl_mem (NCCL buffers by communicator "
        "size, GPUs)",
    }


def _version_sets(pkg: Package, system: str, src: OpSource, framework: str) -> list[list[Path]]:
    """The op's files per version folder that holds all of them, newest first."""
    per_file = [versions(pkg, system, src.family, framework, f) for f in src.files]
    common = set.intersection(*({p.parent.name for p in paths} for paths in per_file))
    return [[p.parent / f for f in src.files] for p in per_file[0] if p.parent.name in common]


def _filled(found: list[tuple[list[Path], pd.DataFrame]], axis: str | None):
    """The newest frame plus, when `axis` is set, older frames' rows at values of `axis` that
    no newer frame has; returns (files used, frame)."""
    files, frame = found[0]
    if axis is None:
        return list(files), frame
    files, parts = list(files), [frame]
    for older_files, older in found[1:]:
        extra = older[~older[axis].isin(pd.concat(parts)[axis].unique())]
        if len(extra):
            files += older_files
            parts.append(extra)
    return files, pd.concat(parts, ignore_index=True)


def _choose(pkg: Package, system: str, src: OpSource, needs: Needs, frameworks) -> Choice | None:
    """First framework (in preference order) whose newest version with rows yields rows; older
    versions fill in values of `src.fill_axis` the newest lacks."""
    for framework, reason in frameworks:
        found = []
        for files in _version_sets(pkg, system, src, framework):
            frame = src.extract([read_table(f) for f in files], needs)
            if len(frame):
                found.append((files, frame))
                if src.fill_axis is None:
                    break
        if found:
            files, frame = _filled(found, src.fill_axis)
            return Choice(framework, reason, files, frame)
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
    needs = shipped_needs(spec["gpus_per_node"], system)
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
