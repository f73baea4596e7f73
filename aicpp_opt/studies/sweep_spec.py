"""The sweep spec (SPEC.yaml): parsed and validated key by key, then expanded into the cross
product of its axes as ``Scenario``s. Format and defaults: ``docs/sweep.md``."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from itertools import product
from pathlib import Path
from typing import Any

from aicpp_opt.errors import InputError
from aicpp_opt.model.context import build_context
from aicpp_opt.search.problem import INSTANCE_OBJECTIVES, OBJECTIVES
from aicpp_opt.spec.enums import Framework, values
from aicpp_opt.spec.instance import MODES, Instance, instance_path, parse_instance, read_json
from aicpp_opt.spec.model import available_models
from aicpp_opt.spec.workload import PRESETS, SLO_TIERS, Workload, num, parse_workload, text
from aicpp_opt.studies.scenario import OWN_SLO, Scenario

ALL_GPUS = "all"
MODE_CHOICES = ("auto", *MODES)
TIER_CHOICES = (OWN_SLO, *SLO_TIERS)
KEYS = (
    "instances",
    "workloads",
    "slo_tiers",
    "budgets",
    "models",
    "frameworks",
    "modes",
    "objectives",
    "replay",
    "time_limit",
)


@dataclass(frozen=True)
class LoadedInstance:
    """An instance of the spec and its file's content (what the scenario carries)."""

    instance: Instance
    json_text: str


@dataclass(frozen=True)
class SweepSpec:
    """The validated spec; None on an axis means its default (per instance)."""

    instances: tuple[LoadedInstance, ...]
    workloads: tuple[str, ...] | None
    slo_tiers: tuple[str, ...]
    budgets: tuple[int | str, ...]
    models: tuple[str, ...] | None
    frameworks: tuple[str, ...] | None
    modes: tuple[str, ...]
    objectives: tuple[str, ...] | None
    replay: bool
    time_limit: float


@dataclass(frozen=True)
class Expansion:
    """The scenarios of a spec (unique, in axis order) and what the expansion changed."""

    scenarios: tuple[Scenario, ...]
    notes: tuple[str, ...]


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a SPEC.yaml file."""
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise InputError("SPEC", f"file not found: {p}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(err, "problem", None) or "cannot parse"
        raise InputError("SPEC", f"{p} is not valid YAML{where}: {problem}") from None
    return parse_spec(data)


def parse_spec(data: Any) -> SweepSpec:
    """Validate a decoded spec: unknown keys, types, choices and duplicates, one key at a time."""
    if not isinstance(data, dict):
        raise InputError("SPEC", "must be a mapping of keys (instances, budgets, ...)")
    for key in data:
        if key not in KEYS:
            raise InputError(str(key), f"unknown key; allowed: {', '.join(KEYS)}")
    if "instances" not in data:
        raise InputError("instances", "is required: a list of names under instances/ or paths")
    replay = data.get("replay", False)
    if not isinstance(replay, bool):
        raise InputError("replay", f"must be true or false, got {replay!r}")
    return SweepSpec(
        instances=_instances(_entries(data, "instances")),
        workloads=_names(data, "workloads"),
        slo_tiers=_names(data, "slo_tiers", TIER_CHOICES) or (OWN_SLO,),
        budgets=_budgets(data) or (ALL_GPUS,),
        models=_names(data, "models", tuple(available_models())),
        frameworks=_names(data, "frameworks", values(Framework)),
        modes=_names(data, "modes", MODE_CHOICES) or ("auto",),
        objectives=_names(data, "objectives", OBJECTIVES),
        replay=replay,
        time_limit=float(num(data.get("time_limit", 60.0), "time_limit", strict=True)),
    )


def _entries(data: dict, key: str) -> list | None:
    """A key's list (a single value counts as a list of one); None when absent; no repeats."""
    if key not in data:
        return None
    value = data[key]
    entries = value if isinstance(value, list) else [value]
    if not entries:
        raise InputError(key, "must list at least one value (or leave the key out)")
    for i, v in enumerate(entries):
        if v in entries[:i]:
            raise InputError(f"{key}[{i}]", f"{v!r} is listed twice")
    return entries


def _names(data: dict, key: str, choices: tuple[str, ...] | None = None) -> tuple[str, ...] | None:
    entries = _entries(data, key)
    if entries is None:
        return None
    return tuple(text(v, f"{key}[{i}]", choices) for i, v in enumerate(entries))


def _budgets(data: dict) -> tuple[int | str, ...] | None:
    entries = _entries(data, "budgets")
    if entries is None:
        return None
    for i, v in enumerate(entries):
        if v != ALL_GPUS and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise InputError(
                f"budgets[{i}]", f"must be a positive number of GPUs or {ALL_GPUS!r}, got {v!r}"
            )
    return tuple(entries)


def _instances(entries: list) -> tuple[LoadedInstance, ...]:
    loaded: list[LoadedInstance] = []
    for i, entry in enumerate(entries):
        field = f"instances[{i}]"
        path = instance_path(text(entry, field))
        try:
            data = read_json(path, field)
            inst = parse_instance(data)
        except InputError as err:
            raise InputError(field, f"{path}: {err}") from None
        if any(other.instance.name == inst.name for other in loaded):
            raise InputError(field, f"instance {inst.name!r} is listed twice")
        loaded.append(LoadedInstance(inst, json.dumps(data, sort_keys=True)))
    return tuple(loaded)


def _workloads(inst: Instance, names: tuple[str, ...] | None) -> list[Workload]:
    """The named workloads of the instance, else presets (default: the instance's own)."""
    if names is None:
        return list(inst.workloads)
    own = {w.name: w for w in inst.workloads}
    out = []
    for i, name in enumerate(names):
        if name in own:
            out.append(own[name])
        elif name in PRESETS:
            out.append(parse_workload(name, f"workloads[{i}]"))
        else:
            raise InputError(
                f"workloads[{i}]",
                f"{name!r} is neither a workload of {inst.name} ({', '.join(own)}) "
                f"nor a preset ({', '.join(PRESETS)})",
            )
    return out


def _with_tier(wl: Workload, tier: str) -> Workload:
    return wl if tier == OWN_SLO else replace(wl, slo=SLO_TIERS[tier])


def _budget(inst: Instance, budget: int | str, notes: list[str]) -> int:
    """GPUs the scenario may use: ``all`` and budgets above the instance are the whole of it."""
    total = sum(p.gpus for p in inst.pools)
    if budget == ALL_GPUS:
        return total
    if budget > total:
        notes.append(f"budgets: {budget} exceeds {inst.name}'s {total} GPUs; solved with {total}")
        return total
    return int(budget)


def _default_framework(inst: Instance, wl: Workload, where: str) -> str:
    """The framework ``solve`` prices the workload's model with on this instance (the one whose
    tables cover most of what the model needs)."""
    try:
        return build_context(inst, wl).framework
    except InputError as err:
        raise InputError(where, str(err)) from None


def expand(spec: SweepSpec) -> Expansion:
    """The cross product instances x workloads x models x frameworks x SLO tiers x budgets x
    modes x objectives, with each instance's defaults filled in (a workload's default model is
    its own, else the instance's); scenarios that resolve to the same one (two budgets above
    the instance's size) are kept once, and the notes say so."""
    scenarios: dict[str, Scenario] = {}
    notes: list[str] = []
    generated = 0
    for i, loaded in enumerate(spec.instances):
        inst = loaded.instance
        served = [
            replace(wl, model=model)
            for wl in _workloads(inst, spec.workloads)
            for model in spec.models or (inst.model_of(wl),)
        ]
        served_by = [
            (wl, fw)
            for wl in served
            for fw in spec.frameworks or (_default_framework(inst, wl, f"instances[{i}]"),)
        ]
        axes = product(
            served_by,
            spec.slo_tiers,
            [_budget(inst, b, notes) for b in spec.budgets],
            spec.modes,
            spec.objectives or (INSTANCE_OBJECTIVES[inst.search.objective],),
        )
        for (wl, framework), tier, budget, mode, objective in axes:
            generated += 1
            s = Scenario(
                instance=inst.name,
                instance_json=loaded.json_text,
                workload=_with_tier(wl, tier),
                slo_tier=tier,
                budget=budget,
                model=wl.model,
                framework=framework,
                mode=mode,
                objective=objective,
                replay=spec.replay,
                time_limit=spec.time_limit,
            )
            scenarios.setdefault(s.id, s)
    repeats = generated - len(scenarios)
    if repeats:
        notes.append(f"{repeats} scenario(s) repeat another after budgets are capped; solved once")
    return Expansion(tuple(scenarios.values()), tuple(notes))
