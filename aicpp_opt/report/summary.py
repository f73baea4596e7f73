"""The numbers a user reads: headline metrics of an evaluation, and the rich tables that
print a plan beside the MILP's prediction, the evaluator's check and the replay."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from aicpp_opt.evaluate.evaluation import Evaluation
from aicpp_opt.spec.enums import RoleKind
from aicpp_opt.spec.plan import Plan, Role


def headline(ev: Evaluation) -> dict[str, float]:
    """Per workload TTFT and TPOT at its SLO percentile and their means (ms), tokens/s per user
    and requests/s (keys suffixed ``@workload`` when the plan serves several); fleet output
    tokens/s, per GPU, GPUs used."""
    out: dict[str, float] = {}
    several = len(ev.workloads) > 1
    for w in ev.workloads:
        tag = f"@{w.workload.name}" if several else ""
        out |= {
            f"ttft_ms{tag}": w.ttft.percentile * 1e3,
            f"ttft_mean_ms{tag}": w.ttft.total * 1e3,
            f"tpot_ms{tag}": w.tpot.percentile * 1e3,
            f"tpot_mean_ms{tag}": w.tpot.mean * 1e3,
            f"tok_s_per_user{tag}": w.flow.output_tps_per_user,
            f"requests_per_s{tag}": w.flow.arrival_rate,
        }
    out |= {
        "throughput_tok_s": ev.output_tps,
        "tok_s_per_gpu": ev.output_tps / ev.gpus if ev.gpus else 0.0,
        "gpus_used": ev.gpus,
    }
    return out


def describe_shape(role: Role) -> str:
    s = role.shape
    text = f"attn TP{s.attn_tp}xDP{s.attn_dp}, MoE TP{s.moe_tp}xEP{s.moe_ep}"
    if role.afd is not None:
        a = role.afd
        where = {True: "colocated", False: "split", None: "placed"}[a.colocated]
        text = (
            f"AFD M={a.attention_gpus} (attn TP{s.attn_tp}xDP{s.attn_dp}) + N={a.ffn_gpus} on "
            f"{a.ffn_pool} (MoE TP{s.moe_tp}xEP{s.moe_ep}), {where}, {a.dispatch}"
        )
    if role.micro_batches > 1:
        text += f", {role.micro_batches} micro-batches"
    return text + (f", MTP {role.mtp}" if role.mtp else "")


def _load(role: Role) -> str:
    if role.role == RoleKind.PREFILL:
        return f"{role.batch} req x {role.chunk_tokens} tok chunks"
    text = f"{role.batch_per_gpu:g} seq/GPU"
    if role.role == RoleKind.AGG:
        text += f", chunk {role.chunk_tokens}"
    return text


def _concurrency(role: Role) -> str:
    """Sequences in flight per replica (decode-like roles) or requests per forward."""
    if role.role == RoleKind.PREFILL:
        return f"{role.batch * role.shape.attn_dp}"
    return f"{role.batch_per_gpu * role.shape.attention_gpus:g}"


def plan_table(plan: Plan) -> Table:
    t = Table(
        title=f"Plan: {plan.mode} ({plan.framework or 'default framework'})", title_justify="left"
    )
    cols = ("role", "workload", "pool", "replicas", "GPUs", "placement", "shape", "batch")
    for col in (*cols, "in flight / replica", "req/s"):
        t.add_column(col)
    for r in plan.roles:
        places = ", ".join(f"{p.pool}/d{p.domain}:{p.gpus}" for p in r.placement)
        rate = "-" if r.rate is None else f"{r.rate:.2f}"
        t.add_row(
            escape(r.id),
            escape(r.workload),
            escape(r.pool),
            str(r.replicas),
            str(r.gpus),
            escape(places),
            describe_shape(r),
            _load(r),
            _concurrency(r),
            rate,
        )
    return t


LABELS = {
    "ttft_ms": "TTFT at SLO percentile (ms)",
    "ttft_mean_ms": "TTFT mean (ms)",
    "tpot_ms": "TPOT at SLO percentile (ms)",
    "tpot_mean_ms": "TPOT mean (ms)",
    "requests_per_s": "requests/s",
    "throughput_tok_s": "output tok/s",
    "tok_s_per_gpu": "tok/s per GPU",
    "tok_s_per_user": "tok/s per user",
    "gpus_used": "GPUs",
    "astra_step_ms": "decode step, replica 0 (ms)",
    "slo_attainment": "requests meeting both SLOs (%)",
}


def numbers_table(columns: dict[str, dict[str, Any] | None]) -> Table:
    """One column per source (MILP prediction, evaluator, replay, simulation)."""
    t = Table(title="Predicted vs checked", title_justify="left")
    t.add_column("metric")
    names = [n for n, v in columns.items() if v is not None]
    for n in names:
        t.add_column(n, justify="right")
    keys = dict.fromkeys(k for n in names for k in columns[n] if k.partition("@")[0] in LABELS)
    for key in keys:
        base, _, workload = key.partition("@")
        label = escape(LABELS.get(base, base) + (f" [{workload}]" if workload else ""))
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
                escape(f"{r.role}/{side}"),
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
