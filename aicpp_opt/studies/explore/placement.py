"""``placement``: paired versus segregated placement at fixed shapes, per model. The best AFD
plan's units are priced with attention and FFN in one NVLink domain (paired: A<->F over NVLink)
and in different domains (segregated: over the scale-out network); the best P/D plan's prefill
and decode shapes, one replica each at the plan's per-replica rate, are placed in one domain
(the KV stays on NVLink) and in different domains (it crosses the scale-out network). Both
placements of one plan go through the evaluator, which prices the link the placement gives.

A placement the fabric cannot hold (a unit larger than a domain, or a second domain that does
not exist) is still priced, as a what-if, and its row says so (``realisable`` false, ``why``)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from aicpp_opt.errors import InputError
from aicpp_opt.evaluate.evaluation import Evaluation, evaluate_context
from aicpp_opt.search.catalog import AFD_PLACEMENTS
from aicpp_opt.spec.enums import Mode, RoleKind
from aicpp_opt.spec.instance import Instance, Pool
from aicpp_opt.spec.plan import Placement, Plan, Role, Route
from aicpp_opt.studies.explore.points import SOLVE_COLUMNS, SolvePoint, failed, plan_columns
from aicpp_opt.studies.explore.setup import Setup, study_instance
from aicpp_opt.studies.explore.study import Case, cite

NAME = "placement"
TITLE = "Paired versus segregated placement"
QUESTION = (
    "At fixed shapes, what does it cost when attention and FFN (A<->F) or prefill and decode "
    "(KV) talk over the scale-out network instead of inside one NVLink domain?"
)
AF, KV = "A<->F", "KV"
PAIRED, SEGREGATED = "paired", "segregated"
UNPRICED = "unpriced"
"""A placement the link model cannot price (e.g. an M-to-N exchange larger than the domain it
is said to fit in): its row gives the reason."""
LINK_COLUMNS = ("link_ms", "link_source", "step_ms")
COLUMNS = SOLVE_COLUMNS + ("traffic", "placement", "realisable", "why", *LINK_COLUMNS)


@dataclass(frozen=True)
class Variant:
    placement: str
    plan: Plan
    realisable: bool
    why: str


@dataclass(frozen=True)
class PlacementPoint:
    """Solve ``base``, then evaluate its plan's ``traffic`` (A<->F or KV) paired and
    segregated."""

    base: SolvePoint
    traffic: str

    def labels(self) -> dict[str, Any]:
        return self.base.labels() | {"traffic": self.traffic}

    def run(self) -> list[dict[str, Any]]:
        start = time.perf_counter()
        labels = self.labels()
        got = self.base.attempt(labels, start)
        if isinstance(got, list):
            return got
        prob, out = got
        inst = prob.instance
        build = afd_variants if self.traffic == AF else kv_variants
        rows = []
        for v in build(inst, out.plan):
            where = labels | {"placement": v.placement, "realisable": v.realisable, "why": v.why}
            try:
                ev = evaluate_context(prob.contexts, v.plan)
            except InputError as err:
                rows.append(where | failed(UNPRICED, str(err), start))
                continue
            rows.append(
                where
                | link_columns(ev, self.traffic)
                | plan_columns(inst, v.plan, ev)
                | {"seconds": time.perf_counter() - start}
            )
        return rows


def afd_variants(inst: Instance, plan: Plan) -> list[Variant]:
    """The plan with every AFD unit colocated (paired) and split (segregated)."""
    units = [r for r in plan.roles if r.afd is not None]
    out = []
    for placement, colocated in ((PAIRED, True), (SEGREGATED, False)):
        roles = tuple(
            replace(r, afd=replace(r.afd, colocated=colocated)) if r.afd is not None else r
            for r in plan.roles
        )
        whys = [w for r in units if (w := _afd_unrealisable(inst, r, colocated))]
        out.append(Variant(placement, replace(plan, roles=roles), not whys, "; ".join(whys)))
    return out


def _afd_unrealisable(inst: Instance, role: Role, colocated: bool) -> str:
    a = role.afd
    pool = inst.pool(role.pool)
    unit = a.attention_gpus + a.ffn_gpus
    if colocated and (a.ffn_pool != role.pool or unit > pool.domain_size):
        return (
            f"what-if: a unit of {a.attention_gpus}+{a.ffn_gpus} GPUs does not fit one NVLink "
            f"domain of {pool.domain_size}"
        )
    if not colocated and a.ffn_pool == role.pool and pool.num_domains < 2:
        return f"what-if: {pool.name} is one NVLink domain; nothing is across the scale-out network"
    return ""


def kv_variants(inst: Instance, plan: Plan) -> list[Variant]:
    """One replica of the plan's first prefill role and of the decode role it feeds, at the
    plan's per-replica rate, in one domain (paired) and in different domains (segregated)."""
    pre = next(r for r in plan.roles if r.role == RoleKind.PREFILL)
    named = [r.decode for r in plan.routes if r.prefill == pre.id]
    dec = plan.role(named[0]) if named else plan.serving(pre.workload, RoleKind.DECODE)[0]
    rate = min(pre.rate / pre.replicas, dec.rate / dec.replicas)
    pool = inst.pool(pre.pool)
    p_gpus, d_gpus = pre.gpus_per_replica, dec.gpus_per_replica
    size = pool.domain_size
    paired_why = (
        ""
        if p_gpus + d_gpus <= size and dec.pool == pre.pool
        else f"what-if: prefill {p_gpus} + decode {d_gpus} GPUs exceed one NVLink domain of {size}"
    )
    start = math.ceil(p_gpus / size)
    needed = start + math.ceil(d_gpus / size)
    apart_why = (
        ""
        if needed <= pool.num_domains or dec.pool != pre.pool
        else f"what-if: needs {needed} NVLink domains, {pool.name} has {pool.num_domains}"
    )
    placements = {
        PAIRED: (
            (Placement(pre.pool, 0, p_gpus),),
            (Placement(dec.pool, 0, d_gpus),),
            paired_why,
        ),
        SEGREGATED: (
            _spread(pool, p_gpus, 0),
            _spread(inst.pool(dec.pool), d_gpus, start if dec.pool == pre.pool else 0),
            apart_why,
        ),
    }
    out = []
    for placement, (first, second, why) in placements.items():
        roles = (
            replace(pre, replicas=1, placement=first, rate=rate),
            replace(dec, replicas=1, placement=second, rate=rate),
        )
        two = replace(plan, roles=roles, routes=(Route(pre.id, dec.id),))
        out.append(Variant(placement, two, not why, why))
    return out


def _spread(pool: Pool, gpus: int, domain: int) -> tuple[Placement, ...]:
    """``gpus`` GPUs of ``pool``, domain by domain from ``domain`` on (a what-if may name a
    domain the pool lacks)."""
    out, left = [], gpus
    while left > 0:
        take = min(left, pool.domain_size)
        out.append(Placement(pool.name, domain, take))
        left -= take
        domain += 1
    return tuple(out)


def link_columns(ev: Evaluation, traffic: str) -> dict[str, Any]:
    """The price of the traffic: A<->F ms per decode step (the AFD exchange ops of the first
    AFD role) or the KV transfer per prefill forward (ms, mean), and the serving step."""
    if traffic == KV:
        w = ev.workloads[0]
        return {"link_ms": w.ttft.kv_transfer * 1e3, "link_source": w.ttft.kv_source}
    role = next(r for r in ev.roles if r.kind != RoleKind.PREFILL)
    ops = [op for op in role.step.ops if op.name.startswith(("A->F", "F->A"))]
    return {
        "link_ms": sum(op.total for op in ops) * 1e3,
        "link_source": "; ".join(dict.fromkeys(op.cost.source for op in ops)),
        "step_ms": role.step.total * 1e3,
    }


def cases(setup: Setup) -> list[Case]:
    """Per model: the best AFD plan of colocated units and, where a unit can be split (a pool of
    several NVLink domains, or several pools), of split units (each then priced the other way
    too), and the best P/D plan."""
    out = []
    limit = setup.grid.time_limit_s
    pools = setup.instance.pools
    split = len(pools) > 1 or any(p.num_domains > 1 for p in pools)
    wheres = AFD_PLACEMENTS if split else ("colocated",)
    for model in setup.models:
        inst = study_instance(setup.instance, model, setup.workload)
        for where in wheres:
            base = SolvePoint(
                inst, setup.afd_modes, setup.budget, afd_placement=where, time_limit=limit
            )
            out.append(Case({}, PlacementPoint(base, AF)))
        base = SolvePoint(inst, (Mode.PD.value,), setup.budget, time_limit=limit)
        out.append(Case({}, PlacementPoint(base, KV)))
    return out


def statements(table: pd.DataFrame, setup: Setup) -> list[str]:
    out = []
    priced = table[table["placement"].notna()]
    keys = ["model", "traffic", "afd_placement"]
    for (model, traffic, base), rows in priced.groupby(keys, sort=False, dropna=False):
        traffic_text = f"{traffic} (best {base} plan)" if base else traffic
        unpriced = rows[rows["status"] == UNPRICED]
        for _, r in unpriced.iterrows():
            out.append(
                f"{model}, {traffic_text}, {r['placement']}: not priced: {r['reason']} "
                f"{cite([r['row']], NAME)}"
            )
        if not unpriced.empty:
            continue
        paired = rows[rows["placement"] == PAIRED].iloc[0]
        apart = rows[rows["placement"] == SEGREGATED].iloc[0]
        what_if = [r["placement"] for r in (paired, apart) if not r["realisable"]]
        ratio = apart["link_ms"] / paired["link_ms"] if paired["link_ms"] else math.inf
        unit = "ms per decode step" if traffic == AF else "ms per prefill forward's KV"
        text = (
            f"{model}, {traffic_text}: segregated {apart['link_ms']:.3f} vs paired "
            f"{paired['link_ms']:.3f} {unit}, ratio {ratio:.2f}; TPOT {paired['tpot_ms']:.2f} -> "
            f"{apart['tpot_ms']:.2f} ms, TTFT {paired['ttft_ms']:.1f} -> {apart['ttft_ms']:.1f} ms "
            f"{cite([paired['row'], apart['row']], NAME)}"
        )
        if what_if:
            text += f" ({' and '.join(what_if)} not realisable on this fabric: a what-if)"
        out.append(text)
    for _, r in table[table["placement"].isna()].iterrows():
        where = cite([r["row"]], NAME)
        base = f" (best {r['afd_placement']} plan)" if r["afd_placement"] else ""
        out.append(f"{r['model']}, {r['traffic']}{base}: no base plan: {r['reason']} {where}")
    return out
