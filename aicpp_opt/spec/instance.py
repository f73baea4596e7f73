"""Instances: the cluster (GPU pools and their interconnect), the model, workloads and the
search space, read from ``instances/*.json`` and validated field by field."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from aicpp_opt.errors import InputError, brief, key_name
from aicpp_opt.jsonio import read_json
from aicpp_opt.paths import data_dir, safe_name, safe_name_or_none
from aicpp_opt.spec.limits import (
    MAX_BATCH_PER_GPU,
    MAX_BW_GBPS,
    MAX_COST_PER_GPU_HOUR,
    MAX_EP,
    MAX_GPUS,
    MAX_LATENCY_NS,
    MAX_MICRO_BATCHES,
    MAX_MIX_SHARE,
    MAX_MTP_DRAFT_TOKENS,
    MAX_POOLS,
    MAX_TOPOLOGY_DIMS,
    MAX_TP,
    MAX_WORKLOADS,
)
from aicpp_opt.spec.model import available_models
from aicpp_opt.spec.workload import (
    Workload,
    integer,
    num,
    only_keys,
    parse_workload,
    req,
    text,
)

MODES = ("agg", "pd", "afd", "afd+pd")
"""Serving modes: aggregated (chunked prefill), P/D disaggregated, AFD units that prefill in
chunks themselves, and AFD decode units fed by P/D prefill."""
OBJECTIVES = ("throughput", "throughput_per_gpu", "throughput_per_dollar")
DIMENSION_KINDS = ("switch", "ring", "fully_connected")


@dataclass(frozen=True)
class Dimension:
    """One interconnect level: ``size`` members per group, per-GPU per-direction bandwidth."""

    kind: str
    size: int
    bw: float  # bytes/s per GPU per direction
    latency: float  # seconds


@dataclass(frozen=True)
class Pool:
    """GPUs of one system; ``topology[0]`` is the scale-up (NVLink) domain."""

    name: str
    system: str
    gpus: int
    topology: tuple[Dimension, ...]
    cost_per_gpu_hour: float | None = None

    @property
    def domain_size(self) -> int:
        return self.topology[0].size

    @property
    def num_domains(self) -> int:
        return math.ceil(self.gpus / self.domain_size)

    def link(self, within_domain: bool) -> Dimension:
        """The link a transfer uses: NVLink inside a domain, else the slowest outer level."""
        if within_domain or len(self.topology) == 1:
            return self.topology[0]
        outer = self.topology[1:]
        return Dimension(
            kind="scale-out",
            size=math.prod(d.size for d in outer),
            bw=min(d.bw for d in outer),
            latency=sum(d.latency for d in outer),
        )


@dataclass(frozen=True)
class SearchSpace:
    """Limits of the optimiser's discrete shape space and its objective."""

    modes: tuple[str, ...] = MODES
    tp_values: tuple[int, ...] = (1, 2, 4, 8)
    max_ep: int = 72
    max_micro_batches: int = 3
    max_batch_per_gpu: int = 512
    objective: str = "throughput"
    mtp_drafts: tuple[int, ...] = (0, 1)
    """MTP draft tokens per decode step the optimiser may choose (models without MTP layers
    get 0 only)."""


@dataclass(frozen=True)
class Instance:
    name: str
    description: str
    pools: tuple[Pool, ...]
    model: str
    workloads: tuple[Workload, ...]
    search: SearchSpace
    mix: tuple[tuple[str, float], ...] = ()
    """Traffic shares of the workloads served together (summing to 1); empty: one workload is
    served at a time."""

    def model_of(self, workload: Workload) -> str:
        """The model a workload's requests go to."""
        return workload.model or self.model

    def pool(self, name: str, field: str = "pool") -> Pool:
        for pool in self.pools:
            if pool.name == name:
                return pool
        known = ", ".join(p.name for p in self.pools)
        raise InputError(field, f"unknown pool {brief(name)}; this instance has: {known}")

    def workload(self, name: str | None) -> Workload:
        """A named workload of the instance (the first when ``name`` is None), else a preset."""
        if name is None:
            return self.workloads[0]
        for wl in self.workloads:
            if wl.name == name:
                return wl
        try:
            return parse_workload(name, "--workload")
        except InputError:
            known = ", ".join(w.name for w in self.workloads)
            raise InputError(
                "--workload", f"unknown workload {brief(name)}; use one of {known}"
            ) from None


def _dimension(data: Any, where: str) -> Dimension:
    only_keys(
        data if isinstance(data, dict) else {}, {"kind", "size", "bw_GBps", "latency_ns"}, where
    )
    return Dimension(
        kind=text(req(data, "kind", where), f"{where}.kind", DIMENSION_KINDS),
        size=integer(req(data, "size", where), f"{where}.size", hi=MAX_GPUS),
        bw=num(req(data, "bw_GBps", where), f"{where}.bw_GBps", strict=True, hi=MAX_BW_GBPS) * 1e9,
        latency=num(req(data, "latency_ns", where), f"{where}.latency_ns", hi=MAX_LATENCY_NS)
        * 1e-9,
    )


def _pool(data: Any, where: str) -> Pool:
    only_keys(
        data if isinstance(data, dict) else {},
        {"name", "system", "gpus", "topology", "cost_per_gpu_hour"},
        where,
    )
    topo = req(data, "topology", where)
    if not isinstance(topo, list) or not topo or len(topo) > MAX_TOPOLOGY_DIMS:
        raise InputError(
            f"{where}.topology",
            f"must be a list of 1 to {MAX_TOPOLOGY_DIMS} dimensions, innermost first",
        )
    dims = tuple(_dimension(d, f"{where}.topology[{i}]") for i, d in enumerate(topo))
    gpus = integer(req(data, "gpus", where), f"{where}.gpus", hi=MAX_GPUS)
    capacity = math.prod(d.size for d in dims)
    if gpus > capacity:
        raise InputError(f"{where}.gpus", f"{gpus} GPUs do not fit the topology ({capacity} slots)")
    cost = data.get("cost_per_gpu_hour")
    return Pool(
        name=text(req(data, "name", where), f"{where}.name"),
        system=safe_name(req(data, "system", where), f"{where}.system"),
        gpus=gpus,
        topology=dims,
        cost_per_gpu_hour=None
        if cost is None
        else num(cost, f"{where}.cost_per_gpu_hour", hi=MAX_COST_PER_GPU_HOUR),
    )


def _search(data: Any) -> SearchSpace:
    if data is None:
        return SearchSpace()
    where = "search"
    if not isinstance(data, dict):
        raise InputError(where, "must be an object (modes, tp_values, max_ep, ...)")
    only_keys(
        data,
        {
            "modes",
            "tp_values",
            "max_ep",
            "max_micro_batches",
            "max_batch_per_gpu",
            "objective",
            "mtp_drafts",
        },
        where,
    )
    modes = data.get("modes", list(MODES))
    if not isinstance(modes, list) or not modes:
        raise InputError("search.modes", f"must be a non-empty list of {', '.join(MODES)}")
    modes = [text(m, f"search.modes[{i}]", MODES) for i, m in enumerate(modes)]
    if len(set(modes)) != len(modes):
        raise InputError("search.modes", f"lists a mode twice: {modes}")
    return SearchSpace(
        modes=tuple(modes),
        tp_values=_tp_values(data.get("tp_values", [1, 2, 4, 8])),
        max_ep=integer(data.get("max_ep", 72), "search.max_ep", hi=MAX_EP),
        max_micro_batches=integer(
            data.get("max_micro_batches", 3), "search.max_micro_batches", hi=MAX_MICRO_BATCHES
        ),
        max_batch_per_gpu=integer(
            data.get("max_batch_per_gpu", 512), "search.max_batch_per_gpu", hi=MAX_BATCH_PER_GPU
        ),
        objective=text(data.get("objective", "throughput"), "search.objective", OBJECTIVES),
        mtp_drafts=_mtp_drafts(data.get("mtp_drafts", [0, 1])),
    )


def _mtp_drafts(raw: Any) -> tuple[int, ...]:
    field = "search.mtp_drafts"
    if not isinstance(raw, list) or not raw or len(raw) > MAX_MTP_DRAFT_TOKENS + 1:
        raise InputError(field, f"must be a non-empty list of integers 0..{MAX_MTP_DRAFT_TOKENS}")
    drafts = tuple(
        integer(d, f"{field}[{i}]", lo=0, hi=MAX_MTP_DRAFT_TOKENS) for i, d in enumerate(raw)
    )
    return tuple(sorted(set(drafts)))


def _tp_values(tps: Any) -> tuple[int, ...]:
    """Distinct powers of two up to MAX_TP (the degrees the cost tables measure)."""
    allowed = [2**i for i in range(MAX_TP.bit_length())]
    if not isinstance(tps, list) or not tps or len(tps) > len(allowed):
        raise InputError(
            "search.tp_values", f"must be a non-empty list of distinct values from {allowed}"
        )
    for i, t in enumerate(tps):
        field = f"search.tp_values[{i}]"
        if integer(t, field, hi=MAX_TP) not in allowed:
            raise InputError(field, f"{t} is not a power of two; use values from {allowed}")
    if len(set(tps)) != len(tps):
        raise InputError("search.tp_values", f"lists a value twice: {tps}")
    return tuple(tps)


def parse_instance(data: Any, base: Path | None = None) -> Instance:
    """Validate a decoded instance JSON object; model files are read relative to ``base``."""
    if not isinstance(data, dict):
        raise InputError("instance", "must be a JSON object")
    only_keys(
        data, {"name", "description", "cluster", "model", "workloads", "search", "mix"}, "instance"
    )
    cluster = req(data, "cluster", "instance")
    pools_raw = req(cluster, "pools", "cluster")
    if not isinstance(pools_raw, list) or not pools_raw:
        raise InputError("cluster.pools", "must be a non-empty list of pools")
    if len(pools_raw) > MAX_POOLS:
        raise InputError("cluster.pools", f"at most {MAX_POOLS} pools, got {len(pools_raw)}")
    pools = tuple(_pool(p, f"cluster.pools[{i}]") for i, p in enumerate(pools_raw))
    names = [p.name for p in pools]
    if len(set(names)) != len(names):
        raise InputError("cluster.pools", f"pool names must be unique, got {names}")
    total = sum(p.gpus for p in pools)
    if total > MAX_GPUS:
        raise InputError(
            "cluster.pools", f"{total} GPUs in all, above the limit of {MAX_GPUS} per instance"
        )
    wl_raw = data.get("workloads", ["chat"])
    if not isinstance(wl_raw, list) or not wl_raw or len(wl_raw) > MAX_WORKLOADS:
        raise InputError("workloads", f"must be a list of 1 to {MAX_WORKLOADS} presets or objects")
    workloads = tuple(parse_workload(w, f"workloads[{i}]") for i, w in enumerate(wl_raw))
    wl_names = [w.name for w in workloads]
    for i, n in enumerate(wl_names):
        if n in wl_names[:i]:
            raise InputError(
                f"workloads[{i}].name", f"{brief(n)} names two workloads; give each its own name"
            )
    description = data.get("description", "")
    if not isinstance(description, str):
        raise InputError("description", f"must be a string, got {brief(description)}")
    model = _model_ref(req(data, "model", "instance"), "model", base)
    workloads = tuple(
        replace(w, model=_model_ref(w.model, f"workloads[{i}].model", base))
        for i, w in enumerate(workloads)
    )
    return Instance(
        name=text(data.get("name", "instance"), "name"),
        description=description,
        pools=pools,
        model=model,
        workloads=workloads,
        search=_search(data.get("search")),
        mix=parse_mix(data.get("mix"), workloads, "mix"),
    )


def _model_ref(name: Any, field: str, base: Path | None) -> str | None:
    """A shipped model's name, or a ``.json`` model file (relative to ``base``, the instance
    file's folder, when given); None stays None (a workload without its own model)."""
    if name is None:
        return None
    name = text(name, field)
    if name.endswith(".json"):
        path = (base or Path()) / name
        if not path.is_file():
            raise InputError(field, f"model file {brief(path)} not found; give an existing file")
        return str(path)
    if name not in available_models():
        raise InputError(
            field, f"unknown model {brief(name)}; use one of {', '.join(available_models())}"
        )
    return name


def parse_mix(
    data: Any, workloads: tuple[Workload, ...], field: str
) -> tuple[tuple[str, float], ...]:
    """Workload shares of the traffic: an object {workload name: share} (shares are normalised
    to sum to 1)."""
    if data is None:
        return ()
    if not isinstance(data, dict) or not data:
        raise InputError(field, 'must be an object like {"chat-relaxed": 0.7, "coding": 0.3}')
    known = [w.name for w in workloads]
    shares = {}
    for name, share in data.items():
        if name not in known:
            where = f"{field}.{key_name(name)}"
            raise InputError(where, f"is not a workload of the instance; use one of {known}")
        shares[name] = num(share, f"{field}.{name}", strict=True, hi=MAX_MIX_SHARE)
    total = sum(shares.values())
    return tuple((name, share / total) for name, share in shares.items())


def instance_path(path_or_name: str | Path) -> Path:
    """The file an instance argument names: a path, or a bare name of a shipped instance."""
    p = Path(path_or_name)
    if not p.suffix and safe_name_or_none(str(path_or_name)) and not p.exists():
        p = data_dir("instances") / f"{path_or_name}.json"
    return p


def load_instance(path_or_name: str | Path) -> Instance:
    """Load a path, or ``instances/<name>.json`` of the shipped instances. A model given as a
    ``.json`` path is read relative to the instance's folder."""
    p = instance_path(path_or_name)
    return parse_instance(read_json(p, "instance"), p.parent)
