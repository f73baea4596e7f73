"""From the MILP's choice to a deployable plan: replica counts, batch, and the placement of
every replica in the pools' scale-up domains (largest blocks first, best fit)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from aicpp_opt.errors import InputError
from aicpp_opt.model.context import Context
from aicpp_opt.opt.milp import MilpResult
from aicpp_opt.opt.options import Corrections, DecodeChoice, PrefillChoice, batch_for_rate
from aicpp_opt.spec.enums import Framework, Mode
from aicpp_opt.spec.instance import Instance, Pool
from aicpp_opt.spec.plan import Placement, Plan, Role, parse_plan, plan_to_dict


@dataclass
class _Block:
    role: int
    pool: str
    gpus: int


def _place_pool(pool: Pool, blocks: list[_Block]) -> dict[int, list[Placement]] | None:
    """Place blocks in ``pool``'s domains: one domain's worth or more takes whole free domains
    first, smaller blocks go to the fullest domain that still has room (never straddling)."""
    free = [
        min(pool.domain_size, pool.gpus - d * pool.domain_size) for d in range(pool.num_domains)
    ]
    out: dict[int, list[Placement]] = {}
    for b in sorted(blocks, key=lambda b: -b.gpus):
        if b.gpus >= pool.domain_size:
            left = b.gpus
            for d in range(len(free)):
                if left and free[d] == pool.domain_size:
                    take = min(left, free[d])
                    free[d] -= take
                    left -= take
                    out.setdefault(b.role, []).append(Placement(pool.name, d, take))
            if left:
                return None
            continue
        fits = [d for d in range(len(free)) if free[d] >= b.gpus]
        if not fits:
            return None
        d = min(fits, key=lambda i: free[i])
        free[d] -= b.gpus
        out.setdefault(b.role, []).append(Placement(pool.name, d, b.gpus))
    return out


def _merge(places: list[Placement]) -> tuple[Placement, ...]:
    total: dict[tuple[str, int], int] = {}
    for p in places:
        total[(p.pool, p.domain)] = total.get((p.pool, p.domain), 0) + p.gpus
    return tuple(Placement(pool, d, g) for (pool, d), g in sorted(total.items()))


def _blocks(index: int, role: Role) -> list[_Block]:
    """A replica's GPU blocks: an AFD unit on one pool is one block (so it stays in one NVLink
    domain when it fits one), across pools one block per side."""
    if role.afd is None:
        return [_Block(index, role.pool, role.shape.attention_gpus)] * role.replicas
    a = role.afd
    if a.ffn_pool == role.pool:
        return [_Block(index, role.pool, a.attention_gpus + a.ffn_gpus)] * role.replicas
    return [_Block(index, role.pool, a.attention_gpus), _Block(index, a.ffn_pool, a.ffn_gpus)] * (
        role.replicas
    )


def place(instance: Instance, roles: list[Role]) -> list[Role] | None:
    """The roles with their placements, or None when they do not pack into the domains."""
    blocks = [b for i, r in enumerate(roles) for b in _blocks(i, r)]
    placed: dict[int, list[Placement]] = {}
    for pool in instance.pools:
        got = _place_pool(pool, [b for b in blocks if b.pool == pool.name])
        if got is None:
            return None
        for i, ps in got.items():
            placed.setdefault(i, []).extend(ps)
    return [replace(r, placement=_merge(placed.get(i, []))) for i, r in enumerate(roles)]


def build_plan(
    instance: Instance,
    ctx: Context,
    corr: Corrections,
    choice: DecodeChoice,
    replicas: int,
    tok_s: float,
    prefill: PrefillChoice | None,
) -> Plan | None:
    """The plan running ``replicas`` of the decode choice at ``tok_s`` output tokens/s in total
    (with its prefill role), validated like any user plan; None if it does not pack."""
    cand = choice.candidate
    batch = batch_for_rate(ctx, choice, corr, tok_s / replicas)
    roles = [replace(cand.role, replicas=replicas, batch_per_gpu=batch)]
    if prefill is not None:
        roles.insert(0, prefill.role)
    placed = place(instance, roles)
    if placed is None:
        return None
    plan = Plan(Mode(cand.mode), tuple(placed), Framework(ctx.framework))
    try:
        return parse_plan(plan_to_dict(plan), instance, ctx.model.moe.num_experts)
    except InputError as err:  # the optimiser built a plan the validator rejects: a bug
        raise RuntimeError(f"optimiser produced an invalid plan: {err}") from err


def plan_from(
    result: MilpResult, instance: Instance, ctx: Context, corr: Corrections
) -> Plan | None:
    """The plan the MILP chose."""
    prefill = result.prefill.payload if result.prefill is not None else None
    return build_plan(
        instance, ctx, corr, result.decode.payload, result.replicas, result.tok_s, prefill
    )
