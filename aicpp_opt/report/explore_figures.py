"""One PNG per ``explore`` study, drawn from the study's table only (every mark is a row).
Points without a plan are drawn as red crosses on the axis, labelled with their status."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from aicpp_opt.studies.explore.setup import BEST  # noqa: E402
from aicpp_opt.studies.explore.study import StudyResult, feasible  # noqa: E402

NO_PLAN = {"marker": "x", "color": "red", "linestyle": "none"}
BEST_STYLE = {
    "marker": "o",
    "markerfacecolor": "none",
    "markersize": 10,
    "color": "black",
    "linestyle": "--",
}
"""The best of all modes in one MILP: drawn over the single modes it may coincide with."""


def _ok(table: pd.DataFrame) -> pd.Series:
    return table["row"].isin(feasible(table)["row"])


def _pareto(table: pd.DataFrame) -> Figure:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    ok = _ok(table)
    for mode, rows in table.groupby("mode", sort=False):
        good = rows[ok[rows.index]].sort_values("tok_s_per_user")
        style = BEST_STYLE if mode == BEST else {"marker": "o"}
        for ax, col in zip(axes, ("throughput_tok_s", "tok_s_per_gpu"), strict=True):
            ax.plot(good["tok_s_per_user"], good[col], label=mode, **style)
            bad = rows[~ok[rows.index]]
            ax.plot(1e3 / bad["tpot_target_ms"], [0] * len(bad), **NO_PLAN)
    axes[0].set(ylabel="output tokens/s (fleet)")
    axes[1].set(ylabel="output tokens/s per GPU")
    for ax in axes:
        ax.set(xlabel="tokens/s per user (1 / mean TPOT)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_title("red x: no plan at that TPOT target (at 1000 / target)", fontsize=9)
    return fig


def _slo_map(table: pd.DataFrame) -> Figure:
    from aicpp_opt.studies.explore.slo_map import cells

    grid = cells(table)
    ttfts = sorted(grid["ttft_target_ms"].unique())
    tpots = sorted(grid["tpot_target_ms"].unique())
    sets = sorted(grid["feasible_families"].unique(), key=lambda s: (s == "none", s))
    palette = plt.get_cmap("Set2")
    colour = {s: (0.85, 0.85, 0.85, 1.0) if s == "none" else palette(i) for i, s in enumerate(sets)}
    fig, ax = plt.subplots(figsize=(1.6 * len(tpots) + 3, 0.9 * len(ttfts) + 2))
    for _, c in grid.iterrows():
        x, y = tpots.index(c["tpot_target_ms"]), ttfts.index(c["ttft_target_ms"])
        ax.add_patch(plt.Rectangle((x - 0.5, y - 0.5), 1, 1, color=colour[c["feasible_families"]]))
        label = f"{c['best_tok_s'] / 1e3:,.1f}k\n{c['best_family']}" if c["best_family"] else "none"
        ax.text(x, y, label, ha="center", va="center", fontsize=8)
    ax.set_xlim(-0.5, len(tpots) - 0.5)
    ax.set_ylim(-0.5, len(ttfts) - 0.5)
    ax.set_xticks(range(len(tpots)), [f"{t:g}" for t in tpots])
    ax.set_yticks(range(len(ttfts)), [f"{t:g}" for t in ttfts])
    ax.set(xlabel="TPOT target (ms)", ylabel="TTFT target (ms)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colour[s]) for s in sets]
    ax.legend(
        handles,
        sets,
        title="feasible families",
        fontsize=8,
        loc="upper left",
        bbox_to_anchor=(1.01, 1),
    )
    ax.set_title("best output tokens/s and its family per cell", fontsize=9)
    return fig


def _af_ratio(table: pd.DataFrame) -> Figure:
    groups = list(table.groupby(["model", "workload"], sort=False))
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 4.2), squeeze=False)
    ok = _ok(table)
    for ax, ((model, wl), rows) in zip(axes[0], groups, strict=True):
        twin = ax.twinx()
        for n, by_n in rows.groupby("n", sort=True):
            good = by_n[ok[by_n.index]].sort_values("m_per_n")
            line = ax.plot(good["m_per_n"], good["throughput_tok_s"], "o-", label=f"N={n}")[0]
            twin.plot(good["m_per_n"], good["tpot_ms"], "s--", color=line.get_color(), alpha=0.5)
            bad = by_n[~ok[by_n.index]]
            ax.plot(bad["m_per_n"], [0] * len(bad), **NO_PLAN)
        ax.set_xscale("log", base=2)
        ax.set(xlabel="M / N (attention GPUs per FFN GPU)", ylabel="output tokens/s (solid)")
        twin.set_ylabel("TPOT at SLO percentile, ms (dashed)")
        ax.set_title(f"{model} · {wl}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig


def _placement(table: pd.DataFrame) -> Figure:
    priced = table[table["placement"].notna()]
    traffics = list(dict.fromkeys(priced["traffic"])) or ["none"]
    fig, axes = plt.subplots(1, len(traffics), figsize=(6 * len(traffics), 4.2), squeeze=False)
    for ax, traffic in zip(axes[0], traffics, strict=True):
        rows = priced[priced["traffic"] == traffic]
        bases = rows["model"] + rows["afd_placement"].fillna("").map(
            lambda b: f"\nbest {b} plan" if b else ""
        )
        groups = list(dict.fromkeys(bases))
        for j, (placement, shift) in enumerate((("paired", -0.2), ("segregated", 0.2))):
            mine = rows[rows["placement"] == placement]
            sub = mine.set_index(bases[mine.index]).reindex(groups)
            bars = ax.bar(
                [i + shift for i in range(len(groups))],
                sub["link_ms"].fillna(0.0),
                width=0.4,
                color=f"C{j}",
                label=placement,
                hatch=["" if r is True else "//" for r in sub["realisable"]],
            )
            ax.bar_label(
                bars,
                labels=[f"{v:.3f}" if pd.notna(v) else "n/a" for v in sub["link_ms"]],
                fontsize=7,
            )
        ax.set_xticks(range(len(groups)), groups, fontsize=7)
        unit = "ms per decode step" if traffic == "A<->F" else "ms per prefill KV transfer"
        ax.set(ylabel=f"{traffic} {unit}", title=f"{traffic} traffic (hatched: what-if)")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    return fig


def _dispatch(table: pd.DataFrame) -> Figure:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    fixed = table[(table["kind"] == "fixed plan") & table["dispatch_forced"].notna()]
    if not fixed.empty:
        x = range(len(fixed))
        axes[0].bar([i - 0.2 for i in x], fixed["step_ms"], width=0.4, label="evaluator")
        axes[0].bar([i + 0.2 for i in x], fixed["replay_step_ms"], width=0.4, label="replay")
        axes[0].set_xticks(list(x), fixed["dispatch_forced"], fontsize=8)
    axes[0].set(ylabel="decode step of the fixed AFD plan (ms)", title="one plan, each dispatch")
    solved = table[table["kind"] == "solved"]
    ok = _ok(solved)
    axes[1].bar(range(len(solved)), solved["throughput_tok_s"].where(ok, 0.0).fillna(0.0))
    axes[1].set_xticks(range(len(solved)), solved["dispatch_forced"], fontsize=8)
    for i, good in enumerate(ok):
        if not good:
            axes[1].plot([i], [0], **NO_PLAN)
    axes[1].set(ylabel="output tokens/s", title="solver's best plan with only this dispatch")
    for ax in axes:
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    return fig


def _workload(table: pd.DataFrame) -> Figure:
    axes_names = list(dict.fromkeys(table["axis"]))
    fig, axes = plt.subplots(1, len(axes_names), figsize=(5 * len(axes_names), 4), squeeze=False)
    ok = _ok(table)
    for ax, axis in zip(axes[0], axes_names, strict=True):
        rows = table[table["axis"] == axis]
        for fam, by_fam in rows.groupby("family", sort=False):
            good = by_fam[ok[by_fam.index]].sort_values("value")
            ax.plot(good["value"], good["throughput_tok_s"], "o-", label=fam)
            bad = by_fam[~ok[by_fam.index]]
            ax.plot(bad["value"], [0] * len(bad), **NO_PLAN)
        if axis != "prefix_reuse":
            ax.set_xscale("log", base=2)
        ax.set(xlabel=axis, ylabel="output tokens/s")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig


def _cost(table: pd.DataFrame) -> Figure:
    fig, ax = plt.subplots(figsize=(9, 4))
    modes = list(dict.fromkeys(table["mode"]))
    for j, objective in enumerate(dict.fromkeys(table["objective"])):
        rows = table[table["objective"] == objective].set_index("mode").reindex(modes)
        good = rows["feasible"].fillna(False).astype(bool)
        values = rows["usd_per_mtok"].where(good, 0.0).fillna(0.0)
        bars = ax.bar(
            [i + 0.4 * j - 0.2 for i in range(len(modes))],
            values,
            0.4,
            label=f"{objective} objective",
        )
        labels = [
            f"${v:.3f}\n${h:,.0f}/h" if ok_ else "no plan"
            for v, h, ok_ in zip(values, rows["usd_per_hour"].fillna(0.0), good, strict=True)
        ]
        ax.bar_label(bars, labels=labels, fontsize=7)
    ax.set_xticks(range(len(modes)), modes)
    ax.set(ylabel="$ per million output tokens (GPUs only)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    top = table["usd_per_mtok"].max()
    if isinstance(top, float) and math.isfinite(top):
        ax.set_ylim(0, top * 1.3)
    return fig


PLOTS: dict[str, Callable[[pd.DataFrame], Figure]] = {
    "pareto": _pareto,
    "slo-map": _slo_map,
    "af-ratio": _af_ratio,
    "placement": _placement,
    "dispatch": _dispatch,
    "workload": _workload,
    "cost": _cost,
}


def plot_study(result: StudyResult, path: Path) -> Path:
    """Draw ``result``'s figure to ``path`` (PNG)."""
    fig = PLOTS[result.name](result.table)
    fig.suptitle(f"{result.name}: {result.title}", fontsize=10, y=1.0)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
