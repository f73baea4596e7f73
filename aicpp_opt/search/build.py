"""From the MILP's solution to a deployable plan: one role per chosen family with its replicas,
batch and planned rate, its blocks placed in the pools' NVLink domains (whole-domain blocks
first, then the rest largest first into the first domain with room: exact for the block sizes
the catalog allows, which is what the MILP's packing rows encode), and the routes from prefill
roles to the decode roles of their workload on the pool they feed."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import replace

from aicpp_opt.errors import InputError
from aicpp_opt.search.formulation import Option, Solution
from aicpp_opt.spec.enums import Framework, RoleKind
from aicpp_opt.spec.instance import Instance, Pool
from aicpp_opt.spec.plan import Placement, Plan, Role, Route, parse_plan, plan_to_dict


def _place_pool(pool: Pool, blocks: list[tuple[str, int]]) -> dict[str, list[Placement]]:
    """(role id, GPUs) blocks into ``pool``'s domains."""
    d = pool.domain_size
    free = [min(d, pool.gpus - i * d) for i in range(pool.num_domains)]
    out: dict[str, list[Placement]] = defaultdict(list)
    for rid, gpus in sorted(blocks, key=lambda b: -b[1]):
        if pool.num_domains > 1 and gpus >= d:
            whole = [i for i in range(len(free)) if free[i] == d][: gpus // d]
            if len(whole) * d < gpus:
                raise RuntimeError(f"the solution does not pack into pool {pool.name}")
            for i in whole:
                free[i] = 0
                out[rid].append(Placement(pool.name, i, d))
            continue
        room = next((i for i in range(len(free)) if free[i] >= gpus), None)
        if room is None:
            raise RuntimeError(f"the solution does not pack into pool {pool.name}")
        free[room] -= gpus
        out[rid].append(Placement(pool.name, room, gpus))
    return out


def _merge(places: list[Placement]) -> tuple[Placement, ...]:
    total: Counter = Counter()
    for p in places:
        total[(p.pool, p.domain)] += p.gpus
    return tuple(Placement(pool, dom, g) for (pool, dom), g in sorted(total.items()))


def _ids(roles: list[Role], several_workloads: bool) -> list[str]:
    """Readable unique ids: the kind, the workload when the plan serves several, a number when
    the same kind serves a workload twice."""
    base = [r.role.value + (f"-{r.workload}" if several_workloads else "") for r in roles]
    seen: Counter = Counter()
    count = Counter(base)
    out = []
    for b in base:
        seen[b] += 1
        out.append(b if count[b] == 1 else f"{b}-{seen[b]}")
    return out


def _routes(roles: list[Role], feeds: dict[str, str]) -> tuple[Route, ...]:
    """Each prefill role's requests split over the decode roles of its workload on the pool it
    feeds, in proportion to their rates."""
    out = []
    for p in roles:
        if p.role != RoleKind.PREFILL:
            continue
        targets = [
            d
            for d in roles
            if d.role == RoleKind.DECODE and d.workload == p.workload and d.pool == feeds[p.id]
        ]
        total = sum(d.rate or 0.0 for d in targets)
        for d in targets:
            share = (d.rate or 0.0) / total if total else 1.0 / len(targets)
            out.append(Route(p.id, d.id, (p.rate or 0.0) * share))
    return tuple(out)


KIND_ORDER = {RoleKind.PREFILL: 0, RoleKind.DECODE: 1, RoleKind.AGG: 2}


def chosen_order(solution: Solution) -> list[Option]:
    """The chosen families in the plan's role order: by workload, prefill first, larger first."""
    return sorted(
        solution.options.values(),
        key=lambda o: (o.family.workload, KIND_ORDER[o.family.kind], -o.family.gpus, o.key),
    )


def plan_from(solution: Solution, instance: Instance, framework: str) -> Plan:
    """The plan of a solution, validated like any user plan."""
    chosen = chosen_order(solution)
    several = len({o.family.workload for o in chosen}) > 1
    roles = [
        replace(
            o.family.role,
            replicas=solution.replicas[o.key],
            batch_per_gpu=o.capacity.batch_per_gpu,
            rate=solution.rates[o.key],
        )
        for o in chosen
    ]
    ids = _ids(roles, several)
    roles = [replace(r, id=i) for r, i in zip(roles, ids, strict=True)]
    feeds = {i: o.family.feeds for i, o in zip(ids, chosen, strict=True)}
    blocks: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for rid, o in zip(ids, chosen, strict=True):
        for b in o.family.blocks:
            blocks[b.pool] += [(rid, b.gpus)] * solution.replicas[o.key]
    placed: dict[str, list[Placement]] = defaultdict(list)
    for pool in instance.pools:
        for rid, ps in _place_pool(pool, blocks.get(pool.name, [])).items():
            placed[rid] += ps
    roles = [replace(r, placement=_merge(placed[r.id])) for r in roles]
    plan = Plan(tuple(roles), Framework(framework), _routes(roles, feeds))
    try:
        return parse_plan(plan_to_dict(plan), instance)
    except InputError as err:  # the optimiser built a plan the validator rejects: a bug
        raise RuntimeError(f"optimiser produced an invalid plan: {err}") from err
