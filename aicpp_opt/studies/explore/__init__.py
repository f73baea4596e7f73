"""``aicpp-opt explore``: design-space studies of one instance, each a set of solves (or
evaluations of fixed plans) run through the sweep's executor, one table per study.

- ``pareto``: throughput against tokens/s per user per mode, from a TPOT sweep;
- ``slo-map``: which mode families are feasible on a TTFT x TPOT grid, and the best;
- ``af-ratio``: AFD plans forced to one M:N ratio class at a time, per workload and model;
- ``placement``: paired vs segregated A<->F and P/D placement at fixed shapes;
- ``dispatch``: all_to_all, direct and allgather/reduce-scatter on a fixed AFD plan (evaluator
  and replay) and forced in the solver;
- ``workload``: ISL, OSL and prefix-reuse sweeps per mode family;
- ``cost``: $/hour and $ per million output tokens per mode, throughput and per-dollar plans.
"""

STUDY_NAMES = ("pareto", "slo-map", "af-ratio", "placement", "dispatch", "workload", "cost")
"""The studies, in report order (the names ``--study`` takes)."""
