"""The evaluator: a fully specified plan in, latencies (mean and SLO percentile), throughput,
memory and feasibility out, from the op model and the measured cost tables."""

from aicpp_opt.evaluate.evaluation import (
    Evaluation,
    Flag,
    RoleResult,
    Tpot,
    Ttft,
    decode_memory,
    evaluate_context,
    evaluate_plan,
    kv_link_domains,
    kv_transfer,
    prefill_memory,
)

evaluate = evaluate_plan
"""The contract name: ``aicpp_opt.evaluate.evaluate(plan, instance, workload)``."""

__all__ = [
    "Evaluation",
    "Flag",
    "RoleResult",
    "Tpot",
    "Ttft",
    "decode_memory",
    "evaluate",
    "evaluate_context",
    "evaluate_plan",
    "kv_link_domains",
    "kv_transfer",
    "prefill_memory",
]
