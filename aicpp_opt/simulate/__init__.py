"""Request-level discrete-event simulation of a plan: requests arrive, are prefilled, move their
KV and are decoded by per-role schedulers that model what the engines do, each forward priced
by the op model at the batch actually formed. See ``docs/simulate.md``."""

from aicpp_opt.simulate.result import RoleStats, SimResult, WorkloadStats
from aicpp_opt.simulate.run import simulate_plan
from aicpp_opt.simulate.stats import Dist

__all__ = ["Dist", "RoleStats", "SimResult", "WorkloadStats", "simulate_plan"]
