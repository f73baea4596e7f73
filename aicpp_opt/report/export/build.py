"""Assemble an export: pick the engine for the format, let it refuse what it cannot express,
build every role's commands (or the Dynamo manifest), the router, and the warnings a deployer
must read (the plan priced for another framework, or for no single one)."""

from __future__ import annotations

from dataclasses import dataclass

from aicpp_opt.errors import InputError, brief
from aicpp_opt.report.export import dynamo, sglang, vllm
from aicpp_opt.report.export.inputs import ExportInput
from aicpp_opt.report.export.launch import Engine, RoleLaunch, Router, role_views

ENGINES: dict[str, Engine] = {"sglang": sglang.ENGINE, "vllm": vllm.ENGINE}
FORMATS = (*ENGINES, "dynamo")


@dataclass(frozen=True)
class Export:
    """Everything written for one plan and format. ``manifest`` is the Dynamo deployment (None
    for launch scripts); ``router`` None when nothing needs to sit in front of the replicas."""

    fmt: str
    engine: Engine
    launches: tuple[RoleLaunch, ...]
    router: Router | None
    manifest: dict | None
    warnings: tuple[str, ...]


def pick_engine(inp: ExportInput, fmt: str, backend: str | None) -> Engine:
    """The engine a format runs: itself, or for Dynamo ``--backend`` (default: the plan's
    framework when Dynamo can run it, else SGLang)."""
    if fmt not in FORMATS:
        raise InputError(
            "--format",
            f"unknown format {brief(fmt)}; use {', '.join(FORMATS)} (TensorRT-LLM is not exported)",
        )
    if fmt != "dynamo":
        if backend is not None:
            raise InputError("--backend", "chooses Dynamo's worker; use it with --format dynamo")
        return ENGINES[fmt]
    if backend is None:
        planned = inp.plan.framework.value if inp.plan.framework is not None else None
        backend = planned if planned in ENGINES else "sglang"
    if backend not in ENGINES:
        raise InputError("--backend", f"unknown backend {brief(backend)}; use {', '.join(ENGINES)}")
    return ENGINES[backend]


def framework_warnings(inp: ExportInput, engine: Engine) -> list[str]:
    """The plan's numbers describe the framework it was priced for; say when that is not the
    one these artefacts run. A mismatch is warned about, not refused: the shape and batch
    still deploy, only the predicted latencies stop applying."""
    framework = inp.plan.framework
    if framework is None:
        tables = "; ".join(
            f"pool {pool}: {', '.join(names)}" for pool, names in inp.default_backends.items()
        )
        return [
            "the plan names no framework: its numbers come from each op's default table "
            f"(cost_tables/<system>/selection.json; {tables}), not from {engine.name}'s alone"
        ]
    if framework.value != engine.key:
        return [
            f"the plan was priced for {framework.value} (plan.framework) but these artefacts run "
            f"{engine.name}: its predicted latencies and throughput do not describe this engine"
        ]
    return []


def build_export(inp: ExportInput, fmt: str, backend: str | None = None) -> Export:
    engine = pick_engine(inp, fmt, backend)
    views = role_views(inp)
    launches = tuple(engine.launch(inp, v) for v in views)
    manifest = dynamo.manifest(inp, engine, views) if fmt == "dynamo" else None
    router = None if manifest is not None else engine.router(inp, views)
    return Export(fmt, engine, launches, router, manifest, tuple(framework_warnings(inp, engine)))
