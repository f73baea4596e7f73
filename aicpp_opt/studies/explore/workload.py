"""``workload``: the base workload with its input length (ISL), output length (OSL) or prefix
reuse changed one at a time (``Grid.isls``, ``osls``, ``prefix_reuses``, each with the base
value), each family of serving modes solved on every GPU of the instance at the workload's SLO.
Each changed workload is a new one to the capacity cache (a cold settle)."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from aicpp_opt.studies.explore.points import SOLVE_COLUMNS, SolvePoint
from aicpp_opt.studies.explore.setup import AFD_FAMILY, Setup, mode_families, study_instance
from aicpp_opt.studies.explore.study import Case, best_row, cite

NAME = "workload"
TITLE = "Input length, output length and prefix reuse"
QUESTION = (
    "As prompts grow, answers lengthen or more of the prompt is a cached prefix, which family "
    "of serving modes serves most, and by how much does AFD win or lose?"
)
COLUMNS = SOLVE_COLUMNS
AXES = ("isl", "osl", "prefix_reuse")


def axis_values(setup: Setup, axis: str) -> list[float]:
    g = setup.grid
    grid = {"isl": g.isls, "osl": g.osls, "prefix_reuse": g.prefix_reuses}
    return sorted({*grid[axis], getattr(setup.workload, axis)})


def cases(setup: Setup) -> list[Case]:
    out = []
    base = setup.workload
    for axis in AXES:
        for value in axis_values(setup, axis):
            wl = (
                base
                if value == getattr(base, axis)
                else replace(base, name=f"{base.name} {axis}={value:g}", **{axis: value})
            )
            inst = study_instance(setup.instance, setup.instance.model, wl)
            for fam, modes in mode_families(setup).items():
                point = SolvePoint(inst, modes, setup.budget, time_limit=setup.grid.time_limit_s)
                out.append(Case({"axis": axis, "value": value, "family": fam}, point))
    return out


def statements(table: pd.DataFrame, setup: Setup) -> list[str]:
    out = []
    for (axis, value), rows in table.groupby(["axis", "value"], sort=False):
        best = best_row(rows)
        if best is None:
            out.append(f"{axis} {value:g}: no family has a plan {cite(rows['row'], NAME)}")
            continue
        afd = best_row(rows[rows["family"] == AFD_FAMILY])
        other = best_row(rows[rows["family"] != AFD_FAMILY])
        text = (
            f"{axis} {value:g}: {best['family']} serves most, {best['throughput_tok_s']:,.0f} tok/s"
        )
        if afd is not None and other is not None:
            gain = afd["throughput_tok_s"] / other["throughput_tok_s"] - 1
            text += f"; AFD vs {other['family']}: {gain:+.1%}"
            cited = [afd["row"], other["row"]]
        else:
            text += "; AFD has no plan" if afd is None else "; only AFD has a plan"
            cited = [best["row"]]
        out.append(f"{text} {cite(cited, NAME)}")
    return out
