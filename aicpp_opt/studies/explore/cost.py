"""``cost``: per serving mode (and the best of all modes in one MILP), the plan with the most
output tokens/s and the plan with the most tokens per dollar (Dinkelbach on the pools' list
prices), each with its $/hour (GPUs only, the instance's ``cost_per_gpu_hour``) and $ per
million output tokens. With one GPU price in the fleet, per dollar is per GPU."""

from __future__ import annotations

import pandas as pd

from aicpp_opt.studies.explore.points import SOLVE_COLUMNS, SolvePoint
from aicpp_opt.studies.explore.setup import BEST, Setup, study_instance
from aicpp_opt.studies.explore.study import Case, cite, feasible

NAME = "cost"
TITLE = "Dollars per hour and per million output tokens"
QUESTION = (
    "What does each serving mode's plan cost per hour and per million output tokens at the "
    "instance's GPU list prices, and how much cheaper per token is the per-dollar plan?"
)
COLUMNS = SOLVE_COLUMNS
OBJECTIVES = ("throughput", "per-dollar")


def cases(setup: Setup) -> list[Case]:
    inst = study_instance(setup.instance, setup.instance.model, setup.workload)
    out = []
    for mode in (*setup.modes, BEST):
        modes = setup.modes if mode == BEST else (mode,)
        for objective in OBJECTIVES:
            point = SolvePoint(
                inst, modes, setup.budget, objective, time_limit=setup.grid.time_limit_s
            )
            out.append(Case({"mode": mode}, point))
    return out


def prices(setup: Setup) -> str:
    """The pools' prices as the instance gives them."""
    pools = setup.instance.pools
    listed = ", ".join(
        f"{p.name} ${p.cost_per_gpu_hour:g}/GPU-hour"
        if p.cost_per_gpu_hour is not None
        else f"{p.name} unpriced"
        for p in pools
    )
    return f"prices: {listed} (source and date: the instance's description)"


def statements(table: pd.DataFrame, setup: Setup) -> list[str]:
    out = [prices(setup)]
    ok = feasible(table)
    if ok.empty:
        return [*out, f"no plan {cite(table['row'], NAME)}"]
    cheapest = ok.loc[ok["usd_per_mtok"].astype(float).idxmin()]
    out.append(
        f"cheapest per token: {cheapest['mode']} ({cheapest['objective']} objective) "
        f"${cheapest['usd_per_mtok']:.3f} per million output tokens, "
        f"${cheapest['usd_per_hour']:,.2f}/hour on {cheapest['gpus_used']:.0f} GPUs "
        f"{cite([cheapest['row']], NAME)}"
    )
    for mode, rows in table.groupby("mode", sort=False):
        good = feasible(rows)
        if good.empty:
            out.append(f"{mode}: no plan: {rows.iloc[0]['reason']} {cite(rows['row'], NAME)}")
            continue
        parts = [
            f"{r['objective']} ${r['usd_per_mtok']:.3f}/Mtok, ${r['usd_per_hour']:,.2f}/h, "
            f"{r['gpus_used']:.0f} GPUs"
            for _, r in good.iterrows()
        ]
        out.append(f"{mode}: {'; '.join(parts)} {cite(good['row'], NAME)}")
    return out
