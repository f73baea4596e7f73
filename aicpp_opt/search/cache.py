"""On-disk cache of settled capacities: one JSON file per (cost tables, model, workload, pools,
search space, modes, framework, routing, code version), so a second solve, a frontier or a
compare reuses them. ``AICPP_OPT_CACHE`` sets the folder (default ``~/.cache/aicpp-opt``);
``AICPP_OPT_CACHE=off`` disables it. Files are named by hex digests and written through
``jsonio.write_text_atomic``; they are JSON with infinities (an unservable shape's service
time), so they are read here, not by the strict reader: a file that does not read back (not
JSON, NaN, not an object) is a miss, and the solver recomputes what a file of the wrong shape
holds (``search.solve``)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import aicpp_opt
from aicpp_opt.jsonio import write_text_atomic
from aicpp_opt.model.context import Context

CODE_PARTS = ("costs", "model", "netsim", "evaluate", "search", "spec")
"""Packages whose source decides a capacity: editing one invalidates the cache."""


def cache_dir() -> Path | None:
    env = os.environ.get("AICPP_OPT_CACHE", "")
    if env.lower() == "off":
        return None
    return Path(env).expanduser() if env else Path.home() / ".cache" / "aicpp-opt"


@lru_cache(maxsize=1)
def code_version() -> str:
    h = hashlib.sha256()
    root = Path(aicpp_opt.__file__).parent
    for part in CODE_PARTS:
        for path in sorted((root / part).rglob("*.py")):
            h.update(path.name.encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def _tables_stamp(ctx: Context) -> list:
    """Name, size and modification time of every cost-table file the context reads."""
    out = []
    for pool in sorted(ctx.costs):
        cm = ctx.costs[pool]
        folder = Path(cm.root) / cm.system.name
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                st = path.stat()
                out.append([str(path), st.st_size, st.st_mtime_ns])
    return out


def key(ctx: Context, extra: dict, slo_targets: bool = True) -> str:
    """The cache key of what was computed in ``ctx`` for the ``extra`` choices; without
    ``slo_targets`` the workload's TTFT and TPOT targets are left out (its percentile stays)."""
    wl = ctx.workload
    if not slo_targets:
        wl = replace(wl, slo=replace(wl.slo, ttft=0.0, tpot=0.0))
    parts = {
        "code": code_version(),
        "tables": _tables_stamp(ctx),
        "model": repr(ctx.model),
        "workload": repr(wl),
        "pools": [repr((p.name, p.system, p.gpus, p.topology)) for p in ctx.pools.values()],
        "framework": ctx.framework,
        "routing": repr(ctx.routing),
        "surrogate": ctx.surrogate,
        "pipeline": ctx.pipeline,
        **extra,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=repr).encode()).hexdigest()


def load(name: str) -> dict | None:
    folder = cache_dir()
    if folder is None:
        return None
    try:
        data = json.loads((folder / f"{name}.json").read_text(), parse_constant=_no_nan)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _no_nan(token: str) -> float:
    if token == "NaN":
        raise ValueError("NaN in a cache file")
    return float(token)


def store(name: str, data: dict) -> None:
    """Write atomically (a concurrent reader sees the old file or the new, never half); a
    folder that cannot be written only costs the next solve the recomputation."""
    folder = cache_dir()
    if folder is None:
        return
    try:
        write_text_atomic(folder / f"{name}.json", json.dumps(data))
    except OSError:
        return
