"""``pareto``: per serving mode, and for the best of all modes in one MILP, the fleet's output
tokens/s (and per GPU) against tokens/s per user, from a sweep of the TPOT target at the base
workload's TTFT, on every GPU of the instance. A mode that has no plan at a target is a row
with its reason (the figure marks it)."""

from __future__ import annotations

import pandas as pd

from aicpp_opt.studies.explore.points import SOLVE_COLUMNS, SolvePoint
from aicpp_opt.studies.explore.setup import AFD_MODES, BEST, Setup, study_instance, with_slo
from aicpp_opt.studies.explore.study import Case, best_row, binding, cite, feasible

NAME = "pareto"
TITLE = "Throughput against interactivity, per mode"
QUESTION = (
    "How much output does the fleet serve at each tokens/s per user (a TPOT target), in each "
    "serving mode and in the best mix of modes, and below which TPOT does each mode stop?"
)
COLUMNS = SOLVE_COLUMNS


def cases(setup: Setup) -> list[Case]:
    out = []
    for tpot in setup.grid.tpots_ms:
        wl = with_slo(setup.workload, tpot_ms=tpot)
        inst = study_instance(setup.instance, setup.instance.model, wl)
        for mode in (*setup.modes, BEST):
            modes = setup.modes if mode == BEST else (mode,)
            point = SolvePoint(inst, modes, setup.budget, time_limit=setup.grid.time_limit_s)
            out.append(Case({"mode": mode, "tpot_target_ms": tpot}, point))
    return out


def statements(table: pd.DataFrame, setup: Setup) -> list[str]:
    out = []
    for mode, rows in table.groupby("mode", sort=False):
        ok = feasible(rows)
        if ok.empty:
            out.append(f"{mode}: no plan at any TPOT target {cite(rows['row'], NAME)}")
            continue
        tightest = ok.loc[ok["tpot_target_ms"].idxmin()]
        missing = rows[~rows["row"].isin(ok["row"])]
        text = (
            f"{mode}: plans down to TPOT {tightest['tpot_target_ms']:g} ms "
            f"({tightest['throughput_tok_s']:,.0f} tok/s, {tightest['tok_s_per_user']:.1f} tok/s "
            f"per user) {cite([tightest['row']], NAME)}"
        )
        if not missing.empty:
            targets = ", ".join(f"{t:g}" for t in missing["tpot_target_ms"])
            text += f"; none at TPOT {targets} ms {cite(missing['row'], NAME)}"
        out.append(text)
    out += afd_gains(table)
    return out


def afd_gains(table: pd.DataFrame) -> list[str]:
    """Per TPOT target: the best AFD mode's throughput against the best other single mode's."""
    out = []
    singles = table[table["mode"] != BEST]
    for tpot, rows in singles.groupby("tpot_target_ms", sort=True):
        afd = best_row(rows[rows["mode"].isin(AFD_MODES)])
        other = best_row(rows[~rows["mode"].isin(AFD_MODES)])
        if afd is None and other is None:
            continue
        if afd is None:
            out.append(
                f"TPOT {tpot:g} ms: no AFD plan; best other mode {other['mode']} "
                f"{other['throughput_tok_s']:,.0f} tok/s {cite([other['row']], NAME)}"
            )
        elif other is None:
            out.append(
                f"TPOT {tpot:g} ms: only AFD ({afd['mode']}) has a plan, "
                f"{afd['throughput_tok_s']:,.0f} tok/s {cite([afd['row']], NAME)}"
            )
        else:
            gain = afd["throughput_tok_s"] / other["throughput_tok_s"] - 1
            out.append(
                f"TPOT {tpot:g} ms: AFD ({afd['mode']}) {afd['throughput_tok_s']:,.0f} tok/s vs "
                f"{other['mode']} {other['throughput_tok_s']:,.0f} tok/s: {gain:+.1%} "
                f"{cite([afd['row'], other['row']], NAME)}; AFD plan: {binding(afd)}"
            )
    return out
