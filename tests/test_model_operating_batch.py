"""The batch a decode role's rate fills (``operating_batch``, Little's law b = rate per GPU x
OSL / accepted tokens x step(b)) against the root of that equation found by bisection, on the
shipped P/D and AFD hand plans (an AFD step, communication-bound, is near linear in the
batch) at several shares of the rate that fills every seat, with and without the step at the
configured batch handed in."""

from __future__ import annotations

import pytest

from aicpp_opt import PROJECT_ROOT
from aicpp_opt.evaluate.evaluation import FILL_TOL, operating_batch
from aicpp_opt.model.context import build_context
from aicpp_opt.model.steps import accepted_tokens, decode_step_seconds
from aicpp_opt.spec.enums import RoleKind
from aicpp_opt.spec.instance import load_instance
from aicpp_opt.spec.plan import load_plan

NVL72 = load_instance("h200_nvl72")


def _little_root(ctx, role, rate: float) -> float:
    """The batch where Little's law holds, by bisection on b - rate x hold x step(b) (the
    configured batch when even that one is filled)."""
    per_gpu = rate / (role.replicas * role.shape.attention_gpus)
    hold = ctx.workload.osl / accepted_tokens(role.mtp, ctx.workload.mtp_acceptance)

    def excess(b: float) -> float:
        return b - per_gpu * hold * decode_step_seconds(ctx, role, b)

    lo, hi = 1e-6, role.batch_per_gpu
    if excess(hi) <= 0:
        return hi
    while hi - lo > 1e-9 * hi:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if excess(mid) > 0 else (mid, hi)
    return hi


@pytest.mark.parametrize("name", ["nvl72_pd", "nvl72_afd"])
@pytest.mark.parametrize("share", [0.3, 0.6, 0.9, 1.2])
def test_operating_batch_is_the_root_of_littles_law(name, share):
    plan = load_plan(PROJECT_ROOT / "instances" / "plans" / f"{name}.json", NVL72)
    role = next(r for r in plan.roles if r.role == RoleKind.DECODE)
    ctx = build_context(NVL72, NVL72.workload(role.workload), framework=plan.framework)
    hold = ctx.workload.osl / accepted_tokens(role.mtp, ctx.workload.mtp_acceptance)
    seats = role.replicas * role.shape.attention_gpus * role.batch_per_gpu
    full = seats / (hold * decode_step_seconds(ctx, role, role.batch_per_gpu))
    rate = share * full
    want = _little_root(ctx, role, rate)
    assert operating_batch(ctx, role, rate) == pytest.approx(want, rel=FILL_TOL)
    step = decode_step_seconds(ctx, role, role.batch_per_gpu)
    assert operating_batch(ctx, role, rate, step) == pytest.approx(want, rel=FILL_TOL)
    if share >= 1:
        assert want == role.batch_per_gpu
