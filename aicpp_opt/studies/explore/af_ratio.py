"""``af-ratio``: AFD plans forced to one M:N ratio class at a time (``Problem.keep``: units of M
attention GPUs feeding N FFN GPUs; the P/D prefill feeding them is free), on every GPU of the
instance, per workload and per model: throughput, TPOT and what binds against M:N. N runs over
``Grid.ffn_gpus`` and M over ``Grid.ratios`` x N, where the catalog has that class (M one of
its attention-side sizes, the unit packing into the instance's NVLink domains)."""

from __future__ import annotations

import pandas as pd

from aicpp_opt.search.catalog import families
from aicpp_opt.spec.model import load_model
from aicpp_opt.studies.explore.points import SOLVE_COLUMNS, Keep, SolvePoint
from aicpp_opt.studies.explore.setup import Setup, study_instance
from aicpp_opt.studies.explore.study import Case, best_row, binding, cite, feasible

NAME = "af-ratio"
TITLE = "AFD: attention to FFN GPUs (M:N)"
QUESTION = (
    "At a fixed GPU count, how do throughput and TPOT of AFD plans change with the ratio of "
    "attention GPUs to FFN GPUs per unit, per workload and per model, and what binds?"
)
COLUMNS = SOLVE_COLUMNS


def ratio_classes(setup: Setup, model: str, inst) -> list[tuple[int, int]]:
    """(M, N) of the grid that the catalog forms for this model and instance."""
    wl = inst.workloads[0]
    formed = {
        (f.role.afd.attention_gpus, f.role.afd.ffn_gpus)
        for f in families(load_model(model), inst, wl, setup.afd_modes)
        if f.role.afd is not None
    }
    out = []
    for n in setup.grid.ffn_gpus:
        for r in setup.grid.ratios:
            m = r * n
            if m == int(m) and (int(m), n) in formed and m + n <= setup.budget:
                out.append((int(m), n))
    return out


def cases(setup: Setup) -> list[Case]:
    out = []
    for model in setup.models:
        for wl in setup.workloads:
            inst = study_instance(setup.instance, model, wl)
            for m, n in ratio_classes(setup, model, inst):
                point = SolvePoint(
                    inst,
                    setup.afd_modes,
                    setup.budget,
                    keep=Keep(ratio=(m, n)),
                    time_limit=setup.grid.time_limit_s,
                )
                labels = {"m": m, "n": n, "m_per_n": m / n}
                out.append(Case(labels, point))
    return out


def statements(table: pd.DataFrame, setup: Setup) -> list[str]:
    out = []
    for (model, workload), rows in table.groupby(["model", "workload"], sort=False):
        ok = feasible(rows)
        best = best_row(rows)
        if best is None:
            out.append(f"{model}, {workload}: no ratio class has a plan {cite(rows['row'], NAME)}")
            continue
        worst = ok.loc[ok["throughput_tok_s"].astype(float).idxmin()]
        text = (
            f"{model}, {workload}: best M:N {best['m']}:{best['n']} "
            f"{best['throughput_tok_s']:,.0f} tok/s at TPOT {best['tpot_ms']:.1f} ms "
            f"({binding(best)}) {cite([best['row']], NAME)}; worst feasible "
            f"{worst['m']}:{worst['n']} {worst['throughput_tok_s']:,.0f} tok/s "
            f"({binding(worst)}) {cite([worst['row']], NAME)}"
        )
        none = rows[~rows["row"].isin(ok["row"])]
        if not none.empty:
            classes = ", ".join(f"{m}:{n}" for m, n in zip(none["m"], none["n"], strict=True))
            text += f"; no plan at {classes} {cite(none['row'], NAME)}"
        out.append(text)
    return out
