"""The strongest simple alternative to the MILP, over the same settled options: one serving
family (aggregated, or decode with one prefill family feeding its pool) per plan, replica counts
scanned in closed form. What a single-role planner can do; the MILP's optimum is never below
it, and above it when a mix of families or pools serves better. Single-workload problems."""

from __future__ import annotations

import math
from dataclasses import dataclass

from aicpp_opt.search.formulation import Option, packing_rows
from aicpp_opt.spec.enums import RoleKind
from aicpp_opt.spec.instance import Instance


@dataclass(frozen=True)
class ScanResult:
    tokens_per_s: float
    serving: Option | None
    replicas: int
    prefill: Option | None
    prefill_replicas: int


def _fits(instance: Instance, budget: int, used: list[tuple[Option, int]]) -> bool:
    """GPUs per pool, the budget and the pools' domain packing hold."""
    total = 0
    for pool in instance.pools:
        counts: dict[int, int] = {}
        for o, n in used:
            for b in o.family.blocks:
                if b.pool == pool.name:
                    counts[b.gpus] = counts.get(b.gpus, 0) + n
        gpus = sum(s * c for s, c in counts.items())
        total += gpus
        if gpus > pool.gpus:
            return False
        if pool.num_domains > 1:
            for coef, rhs in packing_rows(pool, set(counts)):
                if sum(c * counts[s] for s, c in coef.items()) > rhs:
                    return False
    return total <= budget


def scan(options: list[Option], instance: Instance, budget: int, osl: float) -> ScanResult:
    """The best single-family plan (see the module doc)."""
    best = ScanResult(0.0, None, 0, None, 0)
    serving = [o for o in options if o.family.kind != RoleKind.PREFILL]
    prefill = [o for o in options if o.family.kind == RoleKind.PREFILL]
    for d in serving:
        most = budget // d.family.gpus
        feeders = (
            [None]
            if d.family.kind == RoleKind.AGG
            else [p for p in prefill if p.family.feeds == d.family.role.pool]
        )
        for p in feeders:
            for n in range(most, 0, -1):
                rate = n * d.capacity.rate
                if rate * osl <= best.tokens_per_s:
                    break
                if p is None:
                    m, served = 0, rate
                else:
                    m = math.ceil(rate / p.capacity.rate - 1e-12)
                    served = rate
                    while m > 0 and not _fits(instance, budget, [(d, n), (p, m)]):
                        m -= 1
                        served = min(rate, m * p.capacity.rate)
                    if m == 0:
                        continue
                if served * osl <= best.tokens_per_s:
                    continue
                if _fits(instance, budget, [(d, n)] + ([(p, m)] if p else [])):
                    best = ScanResult(served * osl, d, n, p, m)
    return best
