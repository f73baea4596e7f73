"""Dynamo: a ``DynamoGraphDeployment`` (``nvidia.com/v1alpha1``) with the frontend and one
service per role, its replicas, GPUs per pod and hosts per replica, running the SGLang or vLLM
worker with the arguments the plan sets.

Field names as documented by ai-dynamo/dynamo at the commits read:

- docs/kubernetes/api-reference.md @0157f172: ``spec.services`` (at most 25),
  ``spec.backendFramework``; a service's ``componentType``, ``subComponentType``, ``replicas``,
  ``resources.limits.gpu`` (GPUs per host: the total is ``multinode.nodeCount`` x ``gpu``),
  ``multinode.nodeCount`` (at least 2), ``envs``, ``envFromSecret``,
  ``extraPodSpec.mainContainer``.
- docs/kubernetes/deployment/multinode-deployment.md @055373f2: the operator adds the multi-host
  flags (SGLang ``--dist-init-addr/--nnodes/--node-rank``, vLLM's ``--data-parallel-*``).
- examples/backends/sglang/deploy/disagg.yaml @04521f47 (runtime 1.3.1): the frontend service,
  ``python3 -m dynamo.sglang`` workers with ``--disaggregation-mode``, NIXL transfer.
- examples/backends/vllm/deploy/v1beta1/disagg.yaml @14a3b0d9: ``python3 -m dynamo.vllm`` with
  ``--disaggregation-mode prefill|decode``.
"""

from __future__ import annotations

import re

from aicpp_opt.errors import InputError
from aicpp_opt.report.export.inputs import ExportInput
from aicpp_opt.report.export.launch import Engine, Flag, RoleView
from aicpp_opt.spec.enums import RoleKind

API_VERSION = "nvidia.com/v1alpha1"
RUNTIME = "1.3.1"
"""The Dynamo release of the examples the manifest follows; its images are tagged so."""
MAX_SERVICES = 25
HF_SECRET = "hf-token-secret"
SOURCES = (
    "ai-dynamo/dynamo docs/kubernetes/api-reference.md @0157f172",
    "ai-dynamo/dynamo docs/kubernetes/deployment/multinode-deployment.md @055373f2",
    "ai-dynamo/dynamo examples/backends/sglang/deploy/disagg.yaml @04521f47",
    "ai-dynamo/dynamo examples/backends/vllm/deploy/v1beta1/disagg.yaml @14a3b0d9",
)


def image(engine: Engine) -> str:
    return f"nvcr.io/nvidia/ai-dynamo/{engine.key}-runtime:{RUNTIME}"


def k8s_name(text: str) -> str:
    """A DNS-1123 label: lower case, digits and dashes, at most 63 characters."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:63] or "plan"


def words(flags: list[Flag]) -> list[str]:
    return [w for f in flags for w in (f.name, *f.words)]


def service(inp: ExportInput, engine: Engine, view: RoleView) -> dict:
    """One role: ``replicas`` pods (or pod groups of ``nodeCount`` hosts) of its GPUs."""
    worker = engine.dynamo_worker(inp, view)
    lay = view.layout
    svc: dict = {"envFromSecret": HF_SECRET, "componentType": "worker"}
    if view.role.role != RoleKind.AGG:
        svc["subComponentType"] = view.role.role.value
    svc["replicas"] = view.role.replicas
    svc["resources"] = {"limits": {"gpu": str(lay.gpus_per_node)}}
    if lay.nodes > 1:
        svc["multinode"] = {"nodeCount": lay.nodes}
    if worker.env:
        svc["envs"] = [{"name": e.name, "value": " ".join(e.words)} for e in worker.env]
    svc["extraPodSpec"] = {
        "mainContainer": {
            "image": image(engine),
            "command": list(worker.program),
            "args": words(list(worker.flags)),
        }
    }
    return svc


def manifest(inp: ExportInput, engine: Engine, views: list[RoleView]) -> dict:
    """The DynamoGraphDeployment of a plan, named after the plan file."""
    if len(views) + 1 > MAX_SERVICES:
        raise InputError(
            "roles",
            f"a DynamoGraphDeployment holds at most {MAX_SERVICES} services; the plan has "
            f"{len(views)} roles plus the frontend",
        )
    services: dict[str, dict] = {
        "Frontend": {
            "componentType": "frontend",
            "replicas": 1,
            "extraPodSpec": {"mainContainer": {"image": image(engine)}},
        }
    }
    for view in views:
        name = k8s_name(view.role.id)
        if name in services or name == "frontend":
            raise InputError(
                f"{view.field}.id", f"{view.role.id!r} names the same Dynamo service as another"
            )
        services[name] = service(inp, engine, view)
    return {
        "apiVersion": API_VERSION,
        "kind": "DynamoGraphDeployment",
        "metadata": {"name": k8s_name(inp.plan_file.stem)},
        "spec": {"backendFramework": engine.key, "services": services},
    }
