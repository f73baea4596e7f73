"""The decode step's per-GPU timeline as a Gantt chart (PNG, matplotlib Agg).

Two panels: the whole step, and a zoom on two MoE layers in the middle of the step where
the ping-pong overlap is visible and each bar is labelled with its micro-batch. Each GPU
has a compute lane (attention, FFN, other) and, just below it, a lane for the transfers
and collectives it sends; a GPU's sends of one kind for one layer and micro-batch are drawn
as one bar from the first start to the last end (the fan-out of an M x N dispatch would
otherwise stack dozens of bars).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from aicpp_opt.replay.run import SIMULATOR, ReplayResult  # noqa: E402

COLOURS = {
    "attention": "#1f77b4",
    "ffn": "#ff7f0e",
    "other": "#7f7f7f",
    "a2f": "#2ca02c",
    "f2a": "#d62728",
    "tp": "#9467bd",
    "ep_dispatch": "#2ca02c",
    "ep_combine": "#d62728",
    "ffn_collective": "#8c564b",
    "prefill": "#17becf",
    "kv_transfer": "#e377c2",
}
MAX_GPUS = 12


def shown_gpus(result: ReplayResult) -> list[int]:
    """Up to MAX_GPUS GPUs, taken evenly from each role so every role appears."""
    per_role = max(1, MAX_GPUS // max(1, len(result.roles)))
    gpus: list[int] = []
    for role in result.roles:
        ids = sorted(g for g in _role_ids(result, role))
        step = max(1, len(ids) // per_role)
        gpus += ids[::step][:per_role]
    return gpus


def _role_ids(result: ReplayResult, role: str) -> set[int]:
    cats = {"attention": {"attention"}, "ffn": {"ffn"}}.get(role)
    return {
        op.gpus[0]
        for op in result.graph.ops
        if op.kind == "compute" and (cats is None or op.category in cats)
    }


def draw(result: ReplayResult, path: Path, title: str = "decode step") -> Path:
    """Write the Gantt chart to ``path`` and return it."""
    gpus = shown_gpus(result)
    lane = {g: i for i, g in enumerate(gpus)}
    layers = sorted({op.layer for op in result.graph.ops if op.category == "ffn"})
    mid = layers[len(layers) // 2] if layers else 0
    zoom_ops = [i for i, op in enumerate(result.graph.ops) if op.layer in (mid, mid + 1)]
    lo = min((result.sim.op_start[i] for i in zoom_ops), default=0.0)
    hi = max((result.sim.op_end[i] for i in zoom_ops), default=result.step_s)
    fig, axes = plt.subplots(2, 1, figsize=(14, 2.2 + 0.55 * len(gpus) * 2), dpi=110)
    _panel(axes[0], result, lane, 0.0, result.step_s, labels=False)
    axes[0].set_title(f"{title}: {result.step_s * 1e3:.3f} ms ({SIMULATOR})")
    _panel(axes[1], result, lane, lo, hi, labels=True)
    tagged = any(op.micro_batch >= 0 for op in result.graph.ops)
    note = " (bars labelled with their micro-batch)" if tagged else ""
    axes[1].set_title(f"zoom: layers {mid}-{mid + 1}{note}")
    used = {op.category for op in result.graph.ops}
    fig.legend(
        handles=[Patch(color=c, label=k) for k, c in COLOURS.items() if k in used],
        loc="upper center",
        ncol=8,
        bbox_to_anchor=(0.5, 0.995),
        frameon=False,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(path)
    plt.close(fig)
    return path


def _bars(result: ReplayResult, lane: dict[int, int]) -> list[tuple]:
    """(owner GPU, is-comm, category, micro-batch, start, end) per bar: compute ops as they
    are, a GPU's sends merged per (category, layer, micro-batch)."""
    start, end = result.sim.op_start, result.sim.op_end
    bars: list[tuple] = []
    merged: dict[tuple, list[float]] = {}
    for i, op in enumerate(result.graph.ops):
        owner = op.gpus[0]
        if owner not in lane or end[i] <= start[i]:
            continue
        if op.kind == "compute":
            bars.append((owner, False, op.category, op.micro_batch, start[i], end[i]))
            continue
        key = (owner, op.category, op.layer, op.micro_batch)
        span = merged.setdefault(key, [start[i], end[i]])
        span[0], span[1] = min(span[0], start[i]), max(span[1], end[i])
    bars += [(o, True, c, mb, lo, hi) for (o, c, _, mb), (lo, hi) in merged.items()]
    return bars


def _lane_names(result: ReplayResult, lane: dict[int, int]) -> list[str]:
    role_of = {g: role for role in result.roles for g in _role_ids(result, role)}
    return [f"GPU {g} {role_of.get(g, '')} {kind}" for g in lane for kind in ("compute", "sends")]


def _panel(
    ax, result: ReplayResult, lane: dict[int, int], lo: float, hi: float, labels: bool
) -> None:
    span = max(hi - lo, 1e-12)
    for owner, comm, category, mb, t0, t1 in _bars(result, lane):
        if t1 < lo or t0 > hi:
            continue
        y = lane[owner] * 2 + (1 if comm else 0)
        x0, width = (t0 - lo) * 1e3, (t1 - t0) * 1e3
        ax.broken_barh(
            [(x0, width)],
            (y + 0.1, 0.8),
            color=COLOURS.get(category, "#bcbd22"),
            alpha=0.6 if comm else 0.9,
            edgecolor="white",
            linewidth=0.6,
        )
        if labels and mb >= 0 and width > 0.04 * span * 1e3:
            ax.text(
                x0 + width / 2,
                y + 0.5,
                f"mb{mb}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if not comm else "black",
            )
    ticks = [lane[g] * 2 + off + 0.5 for g in lane for off in (0, 1)]
    ax.set_yticks(ticks)
    ax.set_yticklabels(_lane_names(result, lane), fontsize=7)
    ax.set_ylim(0, 2 * len(lane))
    ax.invert_yaxis()
    ax.set_xlim(0, span * 1e3)
    ax.set_xlabel("ms" if lo == 0 else f"ms after {lo * 1e3:.3f} ms")
    ax.grid(axis="x", alpha=0.3)
