"""What a fleet costs: dollars per hour of the GPUs it uses and per million output tokens, from
the pools' list prices (``cost_per_gpu_hour``). GPUs only: no power, hosting or network."""

from __future__ import annotations

from collections.abc import Mapping

from aicpp_opt.spec.instance import Instance
from aicpp_opt.spec.plan import Plan


def fleet_cost(
    instance: Instance, gpus_by_pool: Mapping[str, int], output_tps: float
) -> dict[str, float] | None:
    """``usd_per_hour`` and ``usd_per_million_tokens`` of ``gpus_by_pool`` serving
    ``output_tps`` output tokens/s (None when a used pool has no price)."""
    prices = {p.name: p.cost_per_gpu_hour for p in instance.pools}
    used = {p: g for p, g in gpus_by_pool.items() if g}
    if any(prices[p] is None for p in used):
        return None
    per_hour = sum(prices[p] * g for p, g in used.items())
    tokens_per_hour = output_tps * 3600
    return {
        "usd_per_hour": per_hour,
        "usd_per_million_tokens": per_hour / tokens_per_hour * 1e6 if tokens_per_hour else 0.0,
    }


def plan_gpus(plan: Plan) -> dict[str, int]:
    """GPUs a plan takes per pool (its roles' placements)."""
    out: dict[str, int] = {}
    for role in plan.roles:
        for place in role.placement:
            out[place.pool] = out.get(place.pool, 0) + place.gpus
    return out
