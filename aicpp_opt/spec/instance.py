"""Instances: the cluster (GPU pools and their interconnect), the model, workloads and the
search space, read from ``instances/*.json`` and validated field by field."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aicpp_opt import PROJECT_ROOT
from aicpp_opt.errors import InputError
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
        raise InputError(field, f"unknown pool {name!r}; this instance has: {known}")

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
                "--workload", f"unknown workload {name!r}; use one of {known}"
            ) from None


def _dimension(data: Any, where: str) -> Dimension:
    only_keys(
        data if isinstance(data, dict) else {}, {"kind", "size", "bw_GBps", "latency_ns"}, where
    )
    return Dimension(
        kind=text(req(data, "kind", where), f"{where}.kind", DIMENSION_KINDS),
        size=integer(req(data, "size", where), f"{where}.size"),
        bw=num(req(data, "bw_GBps", where), f"{where}.bw_GBps", strict=True) * 1e9,
        latency=num(req(data, "latency_ns", where), f"{where}.latency_ns") * 1e-9,
    )


def _pool(data: Any, where: str) -> Pool:
    only_keys(
        data if isinstance(data, dict) else {},
        {"name", "system", "gpus", "topology", "cost_per_gpu_hour"},
        where,
    )
    topo = req(data, "topology", where)
    if not isinstance(topo, list) or not topo:
        raise InputError(
            f"{where}.topology", "must be a non-empty list of dimensions, innermost first"
        )
    dims = tuple(_dimension(d, f"{where}.topology[{i}]") for i, d in enumerate(topo))
    gpus = integer(req(data, "gpus", where), f"{where}.gpus")
    capacity = math.prod(d.size for d in dims)
    if gpus > capacity:
        raise InputError(f"{where}.gpus", f"{gpus} GPUs do not fit the topology ({capacity} slots)")
    cost = data.get("cost_per_gpu_hour")
    return Pool(
        name=text(req(data, "name", where), f"{where}.name"),
        system=text(req(data, "system", where), f"{where}.system"),
        gpus=gpus,
        topology=dims,
        cost_per_gpu_hour=None if cost is None else num(cost, f"{where}.cost_per_gpu_hour"),
    )


def _search(data: Any) -> SearchSpace:
    if data is None:
        return SearchSpace()
    where = "search"
    only_keys(
        data if isinstance(data, dict) else {},
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
    tps = data.get("tp_values", [1, 2, 4, 8])
    if not isinstance(modes, list) or not modes:
        raise InputError("search.modes", f"must be a non-empty list of {', '.join(MODES)}")
    if not isinstance(tps, list) or not tps:
        raise InputError("search.tp_values", "must be a non-empty list of integers")
    return SearchSpace(
        modes=tuple(text(m, f"search.modes[{i}]", MODES) for i, m in enumerate(modes)),
        tp_values=tuple(integer(t, f"search.tp_values[{i}]") for i, t in enumerate(tps)),
        max_ep=integer(data.get("max_ep", 72), "search.max_ep"),
        max_micro_batches=integer(data.get("max_micro_batches", 3), "search.max_micro_batches"),
        max_batch_per_gpu=integer(data.get("max_batch_per_gpu", 512), "search.max_batch_per_gpu"),
        objective=text(data.get("objective", "throughput"), "search.objective", OBJECTIVES),
        mtp_drafts=_mtp_drafts(data.get("mtp_drafts", [0, 1])),
    )


def _mtp_drafts(raw: Any) -> tuple[int, ...]:
    if not isinstance(raw, list) or not raw:
        raise InputError("search.mtp_drafts", "must be a non-empty list of integers 0..8")
    drafts = tuple(integer(d, f"search.mtp_drafts[{i}]", lo=0) for i, d in enumerate(raw))
    if max(drafts) > 8:
        raise InputError("search.mtp_drafts", f"at most 8 draft tokens, got {max(drafts)}")
    return tuple(sorted(set(drafts)))


def parse_instance(data: Any) -> Instance:
    """Validate a decoded instance JSON object."""
    if not isinstance(data, dict):
        raise InputError("instance", "must be a JSON object")
    only_keys(
        data, {"name", "description", "cluster", "model", "workloads", "search", "mix"}, "instance"
    )
    cluster = req(data, "cluster", "instance")
    pools_raw = req(cluster, "pools", "cluster")
    if not isinstance(pools_raw, list) or not pools_raw:
        raise InputError("cluster.pools", "must be a non-empty list of pools")
    pools = tuple(_pool(p, f"cluster.pools[{i}]") for i, p in enumerate(pools_raw))
    names = [p.name for p in pools]
    if len(set(names)) != len(names):
        raise InputError("cluster.pools", f"pool names must be unique, got {names}")
    wl_raw = data.get("workloads", ["chat"])
    if not isinstance(wl_raw, list) or not wl_raw:
        raise InputError("workloads", "must be a non-empty list of presets or objects")
    workloads = tuple(parse_workload(w, f"workloads[{i}]") for i, w in enumerate(wl_raw))
    names = [w.name for w in workloads]
    if len(set(names)) != len(names):
        raise InputError(
            "workloads", f"workload names must be unique (give each a name), got {names}"
        )
    model = text(req(data, "model", "instance"), "model")
    for i, w in enumerate(workloads):
        _known_model(w.model, f"workloads[{i}].model")
    _known_model(model, "model")
    return Instance(
        name=text(data.get("name", "instance"), "name"),
        description=str(data.get("description", "")),
        pools=pools,
        model=model,
        workloads=workloads,
        search=_search(data.get("search")),
        mix=parse_mix(data.get("mix"), workloads, "mix"),
    )


def _known_model(name: str | None, field: str) -> None:
    if name is not None and name not in available_models() and not Path(name).is_file():
        raise InputError(
            field, f"unknown model {name!r}; use one of {', '.join(available_models())}"
        )


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
            raise InputError(f"{field}.{name}", f"is not a workload of the instance; use {known}")
        shares[name] = num(share, f"{field}.{name}", strict=True)
    total = sum(shares.values())
    return tuple((name, share / total) for name, share in shares.items())


def read_json(path: str | Path, field: str) -> Any:
    """Decode a JSON file; a missing file or bad JSON is an InputError naming ``field``."""
    p = Path(path)
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise InputError(field, f"file not found: {p}") from None
    except json.JSONDecodeError as err:
        raise InputError(field, f"{p} is not valid JSON (line {err.lineno}: {err.msg})") from None


def instance_path(path_or_name: str | Path) -> Path:
    """The file an instance argument names: a path, or a bare name under ``instances/``."""
    p = Path(path_or_name)
    if not p.suffix and not p.exists():
        p = PROJECT_ROOT / "instances" / f"{path_or_name}.json"
    return p


def load_instance(path_or_name: str | Path) -> Instance:
    """Load ``instances/<name>.json`` or a path."""
    return parse_instance(read_json(instance_path(path_or_name), "instance"))
