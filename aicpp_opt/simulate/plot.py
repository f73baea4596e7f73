"""The latency distributions of a run as a PNG (matplotlib, Agg): per workload, the CDFs of
TTFT and of per-request TPOT, with the SLO target and the measured SLO percentile marked."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from aicpp_opt.simulate.result import SimResult


def _cdf(ax, samples: np.ndarray, target: float, at: float, pct: float, label: str) -> None:
    finite = np.sort(samples[np.isfinite(samples)]) * 1e3
    if len(finite):
        ax.plot(finite, np.arange(1, len(finite) + 1) / len(samples), lw=1.5)
    ax.axvline(target * 1e3, color="tab:red", ls="--", label=f"SLO {target * 1e3:g} ms")
    if math.isfinite(at):
        ax.axvline(at * 1e3, color="tab:green", ls=":", label=f"p{pct:g} {at * 1e3:.1f} ms")
    ax.axhline(pct / 100, color="grey", lw=0.5)
    ax.set(xlabel=f"{label} (ms)", ylabel="share of requests", ylim=(0, 1.01))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")


def plot_latencies(result: SimResult, path: str | Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(result.workloads.values())
    fig, axes = plt.subplots(len(rows), 2, figsize=(11, 3.8 * len(rows)), squeeze=False)
    for (left, right), w in zip(axes, rows, strict=True):
        pct = w.slo.percentile
        _cdf(left, w.ttft_samples, w.slo.ttft, w.slo_ttft, pct, "TTFT")
        _cdf(right, w.tpot_samples, w.slo.tpot, w.slo_tpot, pct, "TPOT")
        left.set_title(f"{title} {w.workload}: TTFT ({w.requests} requests)".strip())
        right.set_title(f"{w.workload}: per-request TPOT, SLO met by {w.slo_attainment:.1%}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
