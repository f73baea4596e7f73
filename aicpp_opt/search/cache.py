"""Keys of the settled-capacity files (``aicpp_opt.diskcache``): one JSON file per (cost
tables, model, workload, pools, search space, modes, framework, routing, code version), so a
second solve, a frontier or a compare reuses them; the solver recomputes what a file of the
wrong shape holds (``search.solve``)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from aicpp_opt.diskcache import code_version, digest
from aicpp_opt.model.context import Context

CODE_PARTS = ("costs", "model", "netsim", "evaluate", "search", "spec")
"""Packages whose source decides a capacity: editing one invalidates the cache."""


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
    return digest(
        {
            "code": code_version(CODE_PARTS),
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
    )
