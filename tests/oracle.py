"""An exhaustive oracle for small instances, built on the evaluator alone: it shares no code with
the optimiser's catalog, capacity or formulation modules (only the search-space constants that
define what may be deployed).

1. Its own enumeration of plain role templates (aggregated, prefill, decode) per workload.
2. Per template, one replica's best rate, judged by ``evaluate_context`` on a plan holding it:
   every integer batch per GPU is scanned (no monotonicity assumed); the rate at a batch is the
   role's capacity when its flags hold (a decode role's judged at that rate), and for roles
   whose TTFT depends on the rate (prefill, aggregated) the largest rate whose TTFT
   percentile holds, by bisection on the evaluator. A
   prefill role is held to the evaluator's planning rule for its part of TTFT
   (``prefill_slo``: its percentile and budget, in a context whose SLO percentile is that one).
3. Replicas of one template share arrivals evenly, so n of them serve n times the rate: per
   workload, kind, pool (and fed pool) an unbounded knapsack gives the best rate for every GPU
   count, and every split of each pool's GPUs over those buckets is tried: a workload serves
   its aggregated rate plus, per decode pool, min(prefill feeding it, decode there); with
   traffic shares the fleet total is the smallest served / share.

Pools are single NVLink domains, so every split packs."""

from __future__ import annotations

import itertools
from dataclasses import replace

from aicpp_opt.evaluate.evaluation import evaluate_context, prefill_slo
from aicpp_opt.model.context import build_context
from aicpp_opt.search.catalog import AGG_CHUNKS, PREFILL_BATCHES, PREFILL_CHUNKS
from aicpp_opt.spec.enums import Framework, RoleKind
from aicpp_opt.spec.instance import Instance
from aicpp_opt.spec.model import load_model
from aicpp_opt.spec.plan import Placement, Plan, Role, Shape

TOL = 1e-5


def _shapes(model, inst: Instance, pool) -> list[Shape]:
    out = []
    for tp in inst.search.tp_values:
        if model.moe.expert_ffn % tp:
            continue
        for ep in (2**i for i in range(12)):
            g = tp * ep
            if ep > min(inst.search.max_ep, model.moe.num_experts) or g > pool.gpus:
                break
            if model.moe.num_experts % ep:
                continue
            for atp in inst.search.tp_values:
                if g % atp == 0 and model.attention.num_heads % atp == 0:
                    out.append(Shape(atp, g // atp, tp, ep))
    return out


def drafts_of(inst: Instance, wl) -> list[int]:
    model = load_model(inst.model_of(wl))
    return [d for d in inst.search.mtp_drafts if d == 0 or model.num_mtp_layers]


def templates(inst: Instance, wl, modes) -> list[tuple[Role, str]]:
    """(role template, fed pool) of every plain role the modes allow."""
    model = load_model(inst.model_of(wl))
    drafts = drafts_of(inst, wl)
    out = []
    for pool in inst.pools:
        for shape in _shapes(model, inst, pool):
            ks = (1, 2) if shape.moe_ep > 1 else (1,)
            base = Role(RoleKind.AGG, pool.name, 1, (), shape, workload=wl.name)
            for k, d in itertools.product(ks, drafts):
                if "agg" in modes:
                    for c in AGG_CHUNKS:
                        out.append((replace(base, micro_batches=k, mtp=d, chunk_tokens=c), ""))
                if "pd" in modes:
                    dec = replace(base, role=RoleKind.DECODE, micro_batches=k, mtp=d)
                    out.append((dec, ""))
            if "pd" in modes:
                new = max(1, int(wl.new_prompt_tokens))
                for k, b, c in itertools.product(
                    ks, PREFILL_BATCHES, sorted({min(c, new) for c in PREFILL_CHUNKS})
                ):
                    pre = replace(
                        base, role=RoleKind.PREFILL, batch=b, chunk_tokens=c, micro_batches=k
                    )
                    out += [(pre, t.name) for t in inst.pools]
    return out


def _placed(role: Role) -> Role:
    return replace(role, placement=(Placement(role.pool, 0, role.gpus),))


def _largest_rate(ok, cap: float) -> float:
    if cap <= 0 or not ok(cap * TOL):
        return 0.0
    if ok(cap):
        return cap
    lo, hi = cap * TOL, cap
    while hi - lo > TOL * hi:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def best_rate(ctxs, inst: Instance, wl, role: Role, feeds: str, framework) -> float:
    """One replica's best requests/s within the SLO terms (see the module doc)."""
    ctx = ctxs[wl.name]
    slo = wl.slo
    if role.role == RoleKind.PREFILL:
        pct, budget = prefill_slo(ctx, max(drafts_of(inst, wl), default=0))
        key = ("planning", wl.name)
        if key not in ctxs:
            planning = replace(wl, slo=replace(slo, percentile=pct))
            ctxs[key] = build_context(inst, planning, framework=ctx.framework, tables=ctx.costs)
        pctx = ctxs[key]
        partner = _placed(
            Role(RoleKind.DECODE, feeds, 1, (), Shape(), batch_per_gpu=1, workload=wl.name, id="d")
        )

        def at(rate):
            pre = _placed(replace(role, id="p", rate=rate))
            plan = Plan((pre, replace(partner, rate=rate)), framework)
            ev = evaluate_context(pctx, plan)
            r = ev.roles[0]
            fits = all(m.fits for m in r.memory.values())
            return fits and rate <= r.capacity and r.ttft.percentile <= budget, r.capacity

        cap = at(0.0)[1]
        return _largest_rate(lambda r: at(r)[0], cap)
    best = 0.0
    for b in range(1, inst.search.max_batch_per_gpu + 1):
        tmpl = _placed(replace(role, id="x", batch_per_gpu=b))
        if role.role == RoleKind.DECODE:
            pre = _placed(
                Role(RoleKind.PREFILL, role.pool, 1, (), Shape(), chunk_tokens=1024, id="p")
            )
            pre = replace(pre, workload=wl.name)
            cap = evaluate_context(ctx, Plan((pre, replace(tmpl, rate=0.0)), framework))
            cap = cap.roles[1].capacity
            ev = evaluate_context(ctx, Plan((pre, replace(tmpl, rate=cap)), framework))
            r = ev.roles[1]
            ok = r.tpot.percentile <= slo.tpot and all(m.fits for m in r.memory.values())
            best = max(best, cap if ok else 0.0)
            continue

        def agg_at(rate, tmpl=tmpl):
            ev = evaluate_context(ctx, Plan((replace(tmpl, rate=rate),), framework))
            return all(f.ok for f in ev.flags), ev.roles[0].capacity

        cap = agg_at(0.0)[1]
        best = max(best, _largest_rate(lambda r, f=agg_at: f(r)[0], cap))
    return best


def _knapsack(items: list[tuple[int, float]], size: int) -> list[float]:
    """Best total rate for each GPU count 0..size from unbounded (gpus, rate) items."""
    best = [0.0] * (size + 1)
    for g in range(1, size + 1):
        best[g] = max([best[g - 1]] + [best[g - s] + r for s, r in items if s <= g])
    return best


def _splits(total: int, parts: int):
    """Every way to give ``total`` or fewer GPUs to ``parts`` buckets."""
    if parts == 0:
        yield ()
        return
    for first in range(total + 1):
        for rest in _splits(total - first, parts - 1):
            yield (first, *rest)


def oracle(inst: Instance, workloads, shares: dict[str, float], modes) -> float:
    """The best output tokens/s of any deployment (see the module doc)."""
    framework = None
    ctxs, tables = {}, None
    for wl in workloads:
        ctx = build_context(inst, wl, framework=framework, tables=tables)
        framework, tables = ctx.framework, ctx.costs
        ctxs[wl.name] = ctx
    fw = Framework(framework)
    buckets: dict[tuple, list[tuple[int, float]]] = {}
    for wl in workloads:
        for role, feeds in templates(inst, wl, modes):
            rate = best_rate(ctxs, inst, wl, role, feeds, fw)
            if rate > 0:
                key = (role.pool, wl.name, role.role, feeds)
                buckets.setdefault(key, []).append((role.gpus, rate))
    per_pool = {}
    for pool in inst.pools:
        keys = [k for k in buckets if k[0] == pool.name]
        curves = [_knapsack(buckets[k], pool.gpus) for k in keys]
        per_pool[pool.name] = (keys, curves)
    best = 0.0
    choices = [
        [(keys, split, curves) for split in _splits(inst.pools[i].gpus, len(keys))]
        for i, (keys, curves) in enumerate(per_pool.values())
    ]
    for combo in itertools.product(*choices):
        rates: dict[tuple, float] = {}
        for keys, split, curves in combo:
            for k, g, curve in zip(keys, split, curves, strict=True):
                rates[k] = curve[g]
        served = {}
        for wl in workloads:
            total = sum(rates.get((p.name, wl.name, RoleKind.AGG, ""), 0.0) for p in inst.pools)
            for t in inst.pools:
                dec = rates.get((t.name, wl.name, RoleKind.DECODE, ""), 0.0)
                pre = sum(
                    rates.get((p.name, wl.name, RoleKind.PREFILL, t.name), 0.0) for p in inst.pools
                )
                total += min(pre, dec)
            served[wl.name] = total
        scale = min(served[w.name] / shares[w.name] for w in workloads)
        best = max(best, sum(shares[w.name] * scale * w.osl for w in workloads))
    return best
