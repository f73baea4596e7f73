"""The numbers a user reads: headline metrics of an evaluation, and the rich tables that
print a plan beside the MILP's prediction, the evaluator's check and the replay."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from aicpp_opt.evaluate.evaluation import Evaluation
from aicpp_opt.spec.plan import Plan, Role


def headline(ev: Evaluation) -> dict[str, float]:
    """TTFT and TPOT at the SLO percentile and their means (ms), fleet output tokens/s, per
    GPU, per user, request rate, GPUs used."""
    return {
        "ttft_ms": ev.ttft.percentile * 1e3,
        "ttft_mean_ms": ev.ttft.total * 1e3,
        "tpot_ms": ev.tpot.percentile * 1e3,
        "tpot_mean_ms": ev.tpot.mean * 1e3,
        "throughput_tok_s": ev.flow.output_tps,
        "tok_s_per_gpu": ev.flow.output_tps_per_gpu,
        "tok_s_per_user": ev.flow.output_tps_per_user,
        "requests_per_s": ev.flow.arrival_rate,
        "gpus_used": ev.gpus,
    }


def describe_shape(role: Role) -> str:
    s = role.shape
    if role.afd is not None:
        a = role.afd
        return (
            f"AFD M={a.attention_gpus} (attn TP{s.attn_tp}xDP{s.attn_dp}) + N={a.ffn_gpus} "
            f"on {a.ffn_pool} (MoE TP{s.moe_tp}xEP{s.moe_ep}, {len(a.pairing)} group(s)), "
            f"K={role.micro_batches}, {a.dispatch}"
        )
    return f"attn TP{s.attn_tp}xDP{s.attn_dp}, MoE TP{s.moe_tp}xEP{s.moe_ep}"


def _load(role: Role) -> str:
    if role.role == "prefill":
        return f"{role.batch} req x {role.chunk_tokens} tok chunks"
    text = f"{role.batch_per_gpu:.1f} seq/GPU"
    if role.role == "agg":
        text += f", chunk {role.chunk_tokens}"
    return text


def plan_table(plan: Plan) -> Table:
    t = Table(title=f"Plan: {plan.mode}", title_justify="left")
    for col in ("role", "pool", "replicas", "GPUs", "placement", "shape", "batch"):
        t.add_column(col)
    for r in plan.roles:
        places = ", ".join(f"{p.pool}/d{p.domain}:{p.gpus}" for p in r.placement)
        t.add_row(r.role, r.pool, str(r.replicas), str(r.gpus), places, describe_shape(r), _load(r))
    return t


def numbers_table(columns: dict[str, dict[str, Any] | None]) -> Table:
    """One column per source (MILP prediction, evaluator, replay)."""
    t = Table(title="Predicted vs checked", title_justify="left")
    t.add_column("metric")
    names = [n for n, v in columns.items() if v is not None]
    for n in names:
        t.add_column(n, justify="right")
    labels = {
        "ttft_ms": "TTFT at SLO percentile (ms)",
        "ttft_mean_ms": "TTFT mean (ms)",
        "tpot_ms": "TPOT at SLO percentile (ms)",
        "tpot_mean_ms": "TPOT mean (ms)",
        "requests_per_s": "requests/s",
        "throughput_tok_s": "output tok/s",
        "tok_s_per_gpu": "tok/s per GPU",
        "tok_s_per_user": "tok/s per user",
        "gpus_used": "GPUs",
    }
    for key, label in labels.items():
        t.add_row(label, *(_fmt(columns[n].get(key)) for n in names))
    return t


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, int):
        return str(v)
    return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.2f}"


def memory_table(ev: Evaluation) -> Table:
    t = Table(title="Memory per GPU (evaluator)", title_justify="left")
    for col in ("role/side", "used GB", "capacity GB", "headroom GB", "weights", "KV", "reserve"):
        t.add_column(col, justify="right" if col != "role/side" else "left")
    gb = 1e9
    for r in ev.roles:
        for side, m in r.memory.items():
            t.add_row(
                f"{r.role}/{side}",
                f"{m.total / gb:.1f}",
                f"{m.capacity / gb:.1f}",
                f"{(m.capacity - m.total) / gb:.1f}",
                f"{m.weights / gb:.1f}",
                f"{m.kv_cache / gb:.1f}",
                f"{m.reserve / gb:.1f}",
            )
    return t


def make_console() -> Console:
    """Rich console; when the output is not a terminal (a pipe, a log, CI) lines are not
    wrapped at 80 columns, so tables and messages stay whole."""
    return Console() if sys.stdout.isatty() else Console(width=200)


def print_tables(console: Console, *tables: Table) -> None:
    for t in tables:
        console.print(t)
