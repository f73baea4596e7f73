"""`calibrate kernels` from aiconfigurator-core: for one system, write per op the table of every
framework with rows (its newest version that has them), fit every series, and record in
`cost_tables/<system>/selection.json` which frameworks have each op and which is preferred when a
deployment's own framework has none."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from aicpp_opt.errors import InputError
from aicpp_opt.paths import inside
from calibrate.aic import Package, read_table, system_yaml, versions
from calibrate.needs import Needs, shipped_needs
from calibrate.ops import SOURCES, OpSource
from calibrate.table import Measured, build_table
from calibrate.writer import dumps_plain, dumps_table, write_all


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
        "mem_bw_scaling": float(gpu["mem_bw_empirical_scaling_factor"]),
        "mem_latency_s": float(gpu["mem_empirical_constant_latency"]),
        "mem_source": f"aiconfigurator-core {pkg.version} systems/{system}.yaml "
        "gpu.mem_bw_empirical_scaling_factor and gpu.mem_empirical_constant_latency "
        "(its memory-bound op model, an empirical correction, not a measurement)",
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


def _choose(pkg: Package, system: str, src: OpSource, needs: Needs, framework: str, reason: str):
    """The framework's newest version with rows; older versions fill in values of
    `src.fill_axis` the newest lacks. None when the framework has no rows for the op."""
    found = []
    for files in _version_sets(pkg, system, src, framework):
        frame = src.extract([read_table(f) for f in files], needs)
        if len(frame):
            found.append((files, frame))
            if src.fill_axis is None:
                break
    if not found:
        return None
    files, frame = _filled(found, src.fill_axis)
    return Choice(framework, reason, files, frame)


def measured(pkg: Package, system: str, src: OpSource, needs: Needs, backend: str | None):
    """The op's measurements from every framework with rows (only `backend`'s when given), in
    contract units, in the op's order of preference."""
    out = []
    for framework, reason in src.frameworks:
        if backend not in (None, framework):
            continue
        choice = _choose(pkg, system, src, needs, framework, reason)
        if choice is None:
            continue
        provenance = {
            "package": "aiconfigurator-core",
            "version": pkg.version,
            "file": ", ".join(pkg.relative(f) for f in choice.files),
            "filter": src.filter,
        }
        out.append(
            Measured(
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
        )
    return out


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
    base = inside(out_root, system, field="--system")
    files = {base / "system.json": dumps_plain(spec)}
    selection: dict[str, dict] = {}
    for src in SOURCES:
        found = measured(pkg, system, src, needs, backend)
        if not found:
            selection[src.op] = {"backend": None, "reason": "no framework has rows for it"}
            continue
        for m in found:
            files[base / m.backend / f"{m.op}.json"] = dumps_table(build_table(m, system))
        first = found[0]
        selection[src.op] = {
            "backend": first.backend,
            "reason": first.selection,
            "file": first.provenance["file"],
            "available": [m.backend for m in found],
        }
    if backend is None:
        files[base / "selection.json"] = dumps_plain(selection)
    write_all(files)
    return list(files)
