"""What the studies of one ``explore`` run read: the instance, the base workload, the models,
the modes and the grids of every axis. The default grids are coarse on purpose (each point is
a solve; a cold capacity settle of a new workload or model takes minutes on a 72-GPU instance);
``Grid`` takes finer ones."""

from __future__ import annotations

from dataclasses import dataclass, replace

from aicpp_opt.errors import InputError
from aicpp_opt.spec.enums import Mode
from aicpp_opt.spec.instance import Instance
from aicpp_opt.spec.model import available_models
from aicpp_opt.spec.workload import SLO, Workload

AFD_MODES = (Mode.AFD.value, Mode.AFD_PD.value)
"""AFD units that prefill themselves, and AFD decode units fed by P/D prefill."""

SECOND_MODEL = "qwen3-235b-a22b"
"""The second model of the per-model studies (af-ratio, placement): a GQA MoE without dense
layers, beside the instance's (DeepSeek-V3.2 in the shipped instances: MLA/DSA, 3 dense
layers)."""


@dataclass(frozen=True)
class Grid:
    """The axes of the studies. Latencies in ms at the workload's percentile."""

    tpots_ms: tuple[float, ...] = (10, 15, 20, 30, 50, 100)
    ttfts_ms: tuple[float, ...] = (500, 1000, 2000, 4000)
    ffn_gpus: tuple[int, ...] = (8, 16, 32)
    """N of the AFD ratio classes; M runs over ``ratios`` x N."""
    ratios: tuple[float, ...] = (0.25, 0.5, 1, 2, 4)
    isls: tuple[float, ...] = (512, 2048, 8192)
    osls: tuple[float, ...] = (128, 2048)
    prefix_reuses: tuple[float, ...] = (0.5, 0.9)
    time_limit_s: float = 60.0
    """The MILP's time limit per solve."""


@dataclass(frozen=True)
class Setup:
    """One explore run's inputs: the instance (its model and pools), the base workload every
    study starts from, the workloads of the per-workload study (af-ratio), the second model of
    the per-model studies (None: the instance's model only), the serving modes compared (the
    instance's ``search.modes``) and the grids."""

    instance: Instance
    workload: Workload
    workloads: tuple[Workload, ...]
    second_model: str | None
    grid: Grid

    @property
    def models(self) -> tuple[str, ...]:
        second = () if self.second_model in (None, self.instance.model) else (self.second_model,)
        return (self.instance.model, *second)

    @property
    def modes(self) -> tuple[str, ...]:
        return tuple(self.instance.search.modes)

    @property
    def afd_modes(self) -> tuple[str, ...]:
        """The AFD modes the instance allows, else AFD decode units fed by P/D prefill: the
        AFD studies (af-ratio, placement, dispatch) need one."""
        allowed = tuple(m for m in self.modes if m in AFD_MODES)
        return allowed or (Mode.AFD_PD.value,)

    @property
    def budget(self) -> int:
        """The fixed GPU count of the studies: every GPU of the instance."""
        return sum(p.gpus for p in self.instance.pools)


def distinct_workloads(instance: Instance) -> tuple[Workload, ...]:
    """The instance's workloads with distinct lengths and prefix reuse (the first of each)."""
    seen: dict[tuple[float, float, float], Workload] = {}
    for wl in instance.workloads:
        seen.setdefault((wl.isl, wl.osl, wl.prefix_reuse), wl)
    return tuple(seen.values())


def make_setup(
    instance: Instance,
    workload: str | None = None,
    second_model: str | None = SECOND_MODEL,
    grid: Grid = Grid(),
    per_workload: int = 2,
) -> Setup:
    """The setup of ``instance``: the base workload (default its first), the first
    ``per_workload`` distinct workloads for af-ratio (the base first), a second model."""
    if second_model is not None and second_model not in available_models():
        raise InputError(
            "--second-model",
            f"unknown model {second_model!r}; use one of {', '.join(available_models())}",
        )
    base = instance.workload(workload)
    others = [w for w in distinct_workloads(instance) if (w.isl, w.osl) != (base.isl, base.osl)]
    return Setup(instance, base, (base, *others)[:per_workload], second_model, grid)


def with_slo(workload: Workload, ttft_ms: float | None = None, tpot_ms: float | None = None):
    """The workload at other SLO targets, under the same name: the capacity cache keeps the op
    model's samples per workload name and lengths, so another target re-settles from them."""
    slo = workload.slo
    return replace(
        workload,
        slo=SLO(
            slo.ttft if ttft_ms is None else ttft_ms / 1e3,
            slo.tpot if tpot_ms is None else tpot_ms / 1e3,
            slo.percentile,
        ),
    )


def study_instance(instance: Instance, model: str, workload: Workload) -> Instance:
    """The instance as one point serves it: ``model`` and ``workload`` alone (no mix)."""
    return replace(instance, model=model, workloads=(replace(workload, model=None),), mix=())


AGGREGATED, PD_FAMILY, AFD_FAMILY = "aggregated", "P/D", "AFD"
BEST = "best"
"""Every allowed mode in one MILP, which may mix them: the best-of-modes plan."""


def mode_families(setup: Setup) -> dict[str, tuple[str, ...]]:
    """The serving-mode families compared (each solved in one MILP): aggregated, P/D and AFD
    (AFD alone and AFD decode fed by P/D prefill), those the instance allows (AFD always)."""
    out: dict[str, tuple[str, ...]] = {}
    if Mode.AGG in setup.modes:
        out[AGGREGATED] = (Mode.AGG.value,)
    if Mode.PD in setup.modes:
        out[PD_FAMILY] = (Mode.PD.value,)
    out[AFD_FAMILY] = setup.afd_modes
    return out
