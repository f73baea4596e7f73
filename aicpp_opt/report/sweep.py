"""The summary figure of a sweep: output tokens/s per scenario, one panel per instance and
workload, bars coloured by the chosen serving mode, scenarios without a plan that holds marked
by their status (infeasible, rejected, bad-input, crashed).
Reads the sweep table's columns (``instance``, ``workload``, ``feasible``, ``status``,
``plan_mode``, ``throughput_tok_s`` and the axes that label the bars)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

LABEL_AXES = ("slo_tier", "budget", "model", "mode", "objective")
"""Axes that tell the scenarios of one panel apart (only those that vary are shown)."""


def bar_labels(table: pd.DataFrame) -> list[str]:
    """Each scenario's label: its values on the axes that vary across the table (the budget
    alone when none varies)."""
    varying = [a for a in LABEL_AXES if table[a].nunique() > 1] or ["budget"]
    return [
        " · ".join(f"{row[a]} GPUs" if a == "budget" else str(row[a]) for a in varying)
        for _, row in table.iterrows()
    ]


def plot_sweep(table: pd.DataFrame, path: Path) -> None:
    """Write the figure to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labelled = table.assign(label=bar_labels(table))
    groups = list(labelled.groupby(["instance", "workload"], sort=True))
    heights = [max(len(g), 2) for _, g in groups]
    fig_height = 1.2 + 0.28 * sum(heights) + 0.5 * len(groups)
    fig, axes = plt.subplots(
        len(groups),
        1,
        figsize=(9, fig_height),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    modes = sorted(labelled.loc[labelled["feasible"], "plan_mode"].dropna().unique())
    colours = {m: plt.get_cmap("tab10")(i) for i, m in enumerate(modes)}
    top = labelled["throughput_tok_s"].max()
    top = top if pd.notna(top) and top > 0 else 1.0
    for ax, ((instance, workload), group) in zip(axes[:, 0], groups, strict=True):
        y = range(len(group))
        ok = group["feasible"].to_numpy(dtype=bool)
        values = group["throughput_tok_s"].fillna(0.0).where(ok, 0.0)
        ax.barh(list(y), values, color=[colours.get(m, "grey") for m in group["plan_mode"]])
        for i, (feasible, status) in enumerate(zip(ok, group["status"], strict=True)):
            if not feasible:
                ax.text(top * 0.01, i, status, va="center", fontsize=7, color="red")
        ax.set_yticks(list(y), group["label"], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, top * 1.05)
        ax.set_title(f"{instance} · {workload}", fontsize=9, loc="left")
        ax.grid(axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel("output tokens/s (evaluator, measured grids)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()]
    if handles:
        fig.legend(handles, list(colours), loc="upper center", ncol=len(handles), fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig_height))
    fig.savefig(path, dpi=120)
    plt.close(fig)
