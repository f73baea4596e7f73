"""What ``aicpp-opt export`` reads: a plan (a plan file, or what ``solve --json`` writes, which
holds the plan under ``"plan"`` and records the instance it solved under ``"instance"``), the
instance it was planned on, the model's checkpoint (its Hugging Face id, derived from the model
file's ``source``, or ``--model-path``) and the GPUs per host of each pool's system."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from aicpp_opt.costs.store import read_system
from aicpp_opt.errors import InputError, brief
from aicpp_opt.jsonio import read_json
from aicpp_opt.spec.instance import Instance, instance_path, load_instance
from aicpp_opt.spec.model import ModelSpec, load_model
from aicpp_opt.spec.plan import Plan, parse_plan


@dataclass(frozen=True)
class ExportInput:
    """A validated plan with everything the launch artefacts need besides the plan itself."""

    plan: Plan
    plan_file: Path
    instance: Instance
    instance_file: Path
    model: ModelSpec
    model_path: str
    model_path_source: str
    gpus_per_node: dict[str, int]
    default_backends: dict[str, tuple[str, ...]]
    """Per pool: the frameworks its system's ``selection.json`` prices ops from by default."""


def hf_id(model: ModelSpec) -> str:
    """The checkpoint a model file was imported from: ``source`` names its Hugging Face
    ``config.json`` as ``<org>--<repo>_config.json``, the id is ``<org>/<repo>``."""
    found = re.fullmatch(r"([^/]+?)--([^/]+)_config\.json", model.source)
    if found is None:
        raise InputError(
            f"models/{model.name}.json source",
            f"{model.source!r} is not <org>--<repo>_config.json; pass --model-path",
        )
    return f"{found[1]}/{found[2]}"


def _plan_and_instance(path: Path) -> tuple[object, object]:
    """The plan object of a file, and the instance it records (solve --json output)."""
    data = read_json(path, "PLAN")
    if isinstance(data, dict) and "plan" in data:
        return data["plan"], data.get("instance")
    return data, None


def read_export_input(plan_path: Path, instance: str | None, model_path: str | None) -> ExportInput:
    """Read and validate PLAN against its instance; ``instance`` overrides the recorded one."""
    plan_data, recorded = _plan_and_instance(plan_path)
    if instance is None:
        if recorded is None:
            raise InputError(
                "--instance", f"{plan_path} records no instance; pass --instance NAME or PATH"
            )
        if not isinstance(recorded, str):
            raise InputError("instance", f"{plan_path} records {brief(recorded)}, not a path")
        instance = recorded
    inst_file = instance_path(instance)
    inst = load_instance(inst_file)
    model = load_model(inst.model)
    plan = parse_plan(plan_data, inst, model.moe.num_experts)
    systems = {p.name: read_system(None, p.system) for p in inst.pools}
    per_node = {name: spec.gpus_per_node for name, (spec, _) in systems.items()}
    backends = {
        name: tuple(sorted({s["backend"] for s in sel.values() if s.get("backend")}))
        for name, (_, sel) in systems.items()
    }
    if model_path is None:
        path, source = hf_id(model), f"models/{model.name}.json source {model.source}"
    else:
        path, source = model_path, "--model-path"
    return ExportInput(plan, plan_path, inst, inst_file, model, path, source, per_node, backends)
