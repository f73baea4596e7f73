"""``slo-map``: on a TTFT x TPOT grid, which serving-mode families (aggregated, P/D, AFD) have
a plan on every GPU of the instance, and the best throughput and its family per cell; plus per
family the lowest TPOT its fastest shape reaches at one sequence per GPU (rows of kind
``floor``), which places the edges of the map between grid points."""

from __future__ import annotations

import pandas as pd

from aicpp_opt.studies.explore.points import FLOOR_COLUMNS, SOLVE_COLUMNS, FloorPoint, SolvePoint
from aicpp_opt.studies.explore.setup import (
    AFD_FAMILY,
    Setup,
    mode_families,
    study_instance,
    with_slo,
)
from aicpp_opt.studies.explore.study import Case, best_row, cite, feasible

NAME = "slo-map"
TITLE = "Which mode families meet which SLO"
QUESTION = (
    "On a grid of TTFT and TPOT targets, which families of serving modes have a plan at all, "
    "which serves most, and is there a region where only AFD is feasible (how wide)?"
)
CELL, FLOOR = "cell", "floor"
COLUMNS = SOLVE_COLUMNS + FLOOR_COLUMNS


def cases(setup: Setup) -> list[Case]:
    families = mode_families(setup)
    base = study_instance(setup.instance, setup.instance.model, setup.workload)
    out = [
        Case({"kind": FLOOR, "family": fam}, FloorPoint(base, modes))
        for fam, modes in families.items()
    ]
    for ttft in setup.grid.ttfts_ms:
        for tpot in setup.grid.tpots_ms:
            wl = with_slo(setup.workload, ttft_ms=ttft, tpot_ms=tpot)
            inst = study_instance(setup.instance, setup.instance.model, wl)
            for fam, modes in families.items():
                point = SolvePoint(inst, modes, setup.budget, time_limit=setup.grid.time_limit_s)
                labels = {"kind": CELL, "family": fam, "ttft_target_ms": ttft}
                labels["tpot_target_ms"] = tpot
                out.append(Case(labels, point))
    return out


def cells(table: pd.DataFrame) -> pd.DataFrame:
    """One line per (TTFT, TPOT) cell: the feasible families (joined by ``+``), the best
    family, its throughput and its row."""
    out = []
    grid = table[table["kind"] == CELL]
    for (ttft, tpot), rows in grid.groupby(["ttft_target_ms", "tpot_target_ms"], sort=True):
        ok = feasible(rows)
        best = best_row(rows)
        out.append(
            {
                "ttft_target_ms": ttft,
                "tpot_target_ms": tpot,
                "feasible_families": "+".join(ok["family"]) if not ok.empty else "none",
                "best_family": best["family"] if best is not None else "",
                "best_tok_s": best["throughput_tok_s"] if best is not None else 0.0,
                "best_plan_mode": best["plan_mode"] if best is not None else "",
                "best_row": int(best["row"]) if best is not None else None,
                "rows": list(rows["row"]),
            }
        )
    return pd.DataFrame(out)


def statements(table: pd.DataFrame, setup: Setup) -> list[str]:
    out = []
    grid = cells(table)
    only = grid[grid["feasible_families"] == AFD_FAMILY]
    if only.empty:
        out.append(f"no cell of the grid where only AFD has a plan {cite(table['row'], NAME)}")
    for ttft, rows in only.groupby("ttft_target_ms", sort=True):
        targets = ", ".join(f"{t:g}" for t in rows["tpot_target_ms"])
        cited = [r for rs in rows["rows"] for r in rs]
        out.append(
            f"TTFT {ttft:g} ms: only AFD has a plan at TPOT {targets} ms "
            f"({len(rows)} of {len(setup.grid.tpots_ms)} TPOT targets) {cite(cited, NAME)}"
        )
    for fam, rows in grid[grid["best_row"].notna()].groupby("best_family", sort=True):
        out.append(
            f"{fam} serves most in {len(rows)} of {len(grid)} cells {cite(rows['best_row'], NAME)}"
        )
    empty = grid[grid["best_row"].isna()]
    if not empty.empty:
        out.append(f"no family has a plan in {len(empty)} of {len(grid)} cells")
    return out + floor_statements(table)


def floor_statements(table: pd.DataFrame) -> list[str]:
    """The batch-1 TPOT floor of each family, and the TPOT range only AFD reaches (its exact
    width, whatever the grid): from AFD's floor up to the lowest other family's."""
    floors = table[(table["kind"] == FLOOR) & table["floor_tpot_ms"].notna()]
    out = [
        f"{r['family']}: lowest TPOT at one sequence per GPU {r['floor_tpot_ms']:.1f} ms "
        f"({r['shape']}) {cite([r['row']], NAME)}"
        for _, r in floors.sort_values("floor_tpot_ms").iterrows()
    ]
    afd = floors[floors["family"] == AFD_FAMILY]
    others = floors[floors["family"] != AFD_FAMILY]
    if afd.empty or others.empty:
        return out
    a = afd.iloc[0]
    o = others.loc[others["floor_tpot_ms"].idxmin()]
    where = cite([a["row"], o["row"]], NAME)
    if a["floor_tpot_ms"] < o["floor_tpot_ms"]:
        width = o["floor_tpot_ms"] - a["floor_tpot_ms"]
        out.append(
            f"only AFD can meet a TPOT in [{a['floor_tpot_ms']:.1f}, {o['floor_tpot_ms']:.1f}) "
            f"ms: {width:.1f} ms wide, at any TTFT and budget (memory held) {where}"
        )
    else:
        out.append(
            f"no TPOT only AFD can meet: its floor {a['floor_tpot_ms']:.1f} ms is not below "
            f"{o['family']}'s {o['floor_tpot_ms']:.1f} ms {where}"
        )
    return out
