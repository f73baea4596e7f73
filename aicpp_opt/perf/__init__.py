"""The performance evaluator: a fully specified plan in, latencies, throughput and memory out,
from the measured cost tables and the instance topology (see docs/architecture.md)."""

from aicpp_opt.perf.afd import afd_step
from aicpp_opt.perf.breakdown import Cost, OpCost, StepBreakdown
from aicpp_opt.perf.context import PerfContext, build_context
from aicpp_opt.perf.evaluate import Evaluation, evaluate, evaluate_context
from aicpp_opt.perf.memory import MemoryBreakdown, memory_per_gpu
from aicpp_opt.perf.queueing import ttft_queueing
from aicpp_opt.perf.step import agg_iteration, decode_step, prefill_time

__all__ = [
    "Cost",
    "Evaluation",
    "MemoryBreakdown",
    "OpCost",
    "PerfContext",
    "StepBreakdown",
    "afd_step",
    "agg_iteration",
    "build_context",
    "decode_step",
    "evaluate",
    "evaluate_context",
    "memory_per_gpu",
    "prefill_time",
    "ttft_queueing",
]
