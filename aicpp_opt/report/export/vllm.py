"""vLLM: one ``vllm serve`` per replica and host, the NIXL proxy in front of a P/D plan, and the
``dynamo.vllm`` worker arguments.

Argument names and what they count, as documented by vllm-project/vllm at the commits read:

- vllm/engine/arg_utils.py @99d7eb5d: every engine flag written here (``--tensor-parallel-size``,
  ``--data-parallel-*``, ``--enable-expert-parallel``, ``--all2all-backend``, ``--enable-dbo``,
  ``--max-num-seqs``, ``--max-num-batched-tokens``, ``--enable-chunked-prefill``,
  ``--speculative-config``, ``--kv-transfer-config``).
- vllm/config/parallel.py @00193b82: the all-to-all backends; MoE layers are sharded over
  TP x DP, as experts (``--enable-expert-parallel``) or as tensor slices.
- docs/serving/expert_parallel_deployment.md @01702569: EP size = TP x DP; one command per
  host with ``--data-parallel-size-local``, ``--data-parallel-address``,
  ``--data-parallel-rpc-port``, ``--data-parallel-start-rank`` and ``--headless``; DeepEP
  high-throughput for prefill, low-latency for decode; P/D with ``NixlConnector``.
- docs/serving/distributed_serving.md @06824165: a TP group across hosts needs Ray.
- docs/features/nixl_connector_usage.md @026c83f9: ``--kv-transfer-config`` with
  ``NixlConnector``, ``VLLM_NIXL_SIDE_CHANNEL_HOST`` / ``_PORT`` (port + DP rank per worker),
  the proxy ``tests/v1/kv_connector/nixl_integration/toy_proxy_server.py``.
- docs/features/nixl_connector_compatibility.md @0a5110ef: P and D must use the same
  speculative method (the number of draft tokens may differ).
- vllm/config/speculative.py @002e77c1: ``deepseek_mtp`` and ``mtp`` methods.
- Code (vllm/config/vllm.py, read through code search): dual-batch overlap needs a DeepEP
  all-to-all backend.
"""

from __future__ import annotations

import json

from aicpp_opt.errors import InputError
from aicpp_opt.report.export.inputs import ExportInput
from aicpp_opt.report.export.launch import (
    HTTP_PORT,
    Command,
    Engine,
    Flag,
    RoleArgs,
    RoleLaunch,
    RoleView,
    Router,
    check_common,
    draft_tokens,
    endpoints,
    full_ep,
    host_commands,
    url,
)
from aicpp_opt.spec.enums import RoleKind

SERVE = ("vllm", "serve", "${MODEL_PATH}")
PROXY = (
    "python",
    "${VLLM_SRC:?set VLLM_SRC to a vLLM source checkout}/tests/v1/kv_connector/"
    "nixl_integration/toy_proxy_server.py",
)
DYNAMO_WORKER = ("python3", "-m", "dynamo.vllm")
RPC_PORT = 13345
NIXL_PORT = 5600
PROXY_PORT = 8000
ALL2ALL = {
    RoleKind.PREFILL: "deepep_high_throughput",
    RoleKind.DECODE: "deepep_low_latency",
    RoleKind.AGG: "deepep_low_latency",
}
DEEPSEEK_ARCHITECTURES = ("DeepseekV3ForCausalLM", "DeepseekV32ForCausalLM")
SOURCES = (
    "vllm-project/vllm vllm/engine/arg_utils.py @99d7eb5d",
    "vllm-project/vllm vllm/config/parallel.py @00193b82",
    "vllm-project/vllm docs/serving/expert_parallel_deployment.md @01702569",
    "vllm-project/vllm docs/serving/distributed_serving.md @06824165",
    "vllm-project/vllm docs/features/nixl_connector_usage.md @026c83f9",
    "vllm-project/vllm docs/features/nixl_connector_compatibility.md @0a5110ef",
    "vllm-project/vllm vllm/config/speculative.py @002e77c1",
    "vllm-project/vllm vllm/config/vllm.py (dual-batch overlap needs DeepEP; code search)",
)


def _check(inp: ExportInput, view: RoleView) -> None:
    check_common(inp, view, "vLLM", "--enable-dbo")
    s, host = view.role.shape, inp.gpus_per_node[view.role.pool]
    if s.moe_tp > 1 and s.moe_ep > 1:
        raise InputError(
            f"{view.field}.shape",
            f"vLLM shards MoE layers over TP x DP = {view.role.gpus_per_replica} GPUs as experts "
            f"(--enable-expert-parallel) or as tensor slices, not as MoE TP{s.moe_tp} x "
            f"EP{s.moe_ep}: use moe_tp 1 or moe_ep 1",
        )
    if s.attn_tp > host:
        raise InputError(
            f"{view.field}.shape.attn_tp",
            f"a vLLM tensor-parallel group of {s.attn_tp} spans hosts of {host} GPUs, which "
            "vLLM runs only under Ray; the export writes one process per host: use attn_tp "
            f"<= {host}",
        )


def _parallel(view: RoleView) -> tuple[list[Flag], list[str]]:
    s, f = view.role.shape, f"{view.field}.shape"
    flags = [Flag("--tensor-parallel-size", str(s.attn_tp), f"{f}.attn_tp = {s.attn_tp}")]
    notes = []
    if s.attn_dp > 1:
        flags.append(Flag("--data-parallel-size", str(s.attn_dp), f"{f}.attn_dp = {s.attn_dp}"))
    if full_ep(view):
        flags.append(
            Flag(
                "--enable-expert-parallel",
                None,
                f"{f}.moe_ep = {s.moe_ep} = attn_tp x attn_dp (vLLM's EP size is TP x DP)",
            )
        )
        backend = ALL2ALL[view.role.role]
        flags.append(
            Flag(
                "--all2all-backend",
                backend,
                f"{view.field}.role = {view.role.role}: DeepEP "
                f"{'high-throughput' if backend.endswith('throughput') else 'low-latency'} "
                "kernels, the mode the plan prices its dispatch/combine with",
            )
        )
    else:
        notes.append(
            f"{f}.moe_tp = {s.moe_tp}, moe_ep = 1: no flag, vLLM shards MoE as tensor slices "
            "over TP x DP by default"
        )
    return flags, notes


def _batch(view: RoleView, mtp: int) -> tuple[list[Flag], list[str]]:
    role, f = view.role, view.field
    flags: list[Flag] = []
    notes: list[str] = []
    per_rank = f"ceil({f}.batch_per_gpu x attn_tp) = {view.seqs_per_rank} per DP rank"
    if role.role == RoleKind.PREFILL:
        flags += [
            Flag("--max-num-seqs", str(role.batch), f"{f}.batch per DP rank"),
            Flag(
                "--max-num-batched-tokens",
                str(view.prefill_tokens_per_rank),
                f"{f}.batch x chunk_tokens = {role.batch} x {role.chunk_tokens} per DP rank",
            ),
        ]
        notes.append(
            "vLLM budgets tokens per step, not per request: one long prompt may take the whole "
            f"{view.prefill_tokens_per_rank}-token budget of a DP rank"
        )
    else:
        flags.append(Flag("--max-num-seqs", str(view.seqs_per_rank), per_rank))
    if role.role == RoleKind.AGG:
        decode_tokens = view.seqs_per_rank * (1 + mtp)
        flags.append(
            Flag(
                "--max-num-batched-tokens",
                str(role.chunk_tokens + decode_tokens),
                f"{f}.chunk_tokens {role.chunk_tokens} + {decode_tokens} decode tokens per DP "
                f"rank ({view.seqs_per_rank} sequences x (1 + {mtp} MTP drafts)): vLLM counts "
                "decode tokens in the step budget",
            )
        )
    if role.role != RoleKind.DECODE:
        flags.append(Flag("--enable-chunked-prefill", None, f"{f}.chunk_tokens: prefill in chunks"))
    else:
        notes.append(
            "--max-num-batched-tokens keeps vLLM's default; it must hold "
            f"{view.seqs_per_rank * (1 + mtp)} decode tokens per step"
        )
    return flags, notes


def _mtp(inp: ExportInput, n: int, source: str) -> list[Flag]:
    if not n:
        return []
    method = "deepseek_mtp" if inp.model.architecture in DEEPSEEK_ARCHITECTURES else "mtp"
    config = json.dumps({"method": method, "num_speculative_tokens": n}, separators=(",", ":"))
    return [Flag("--speculative-config", config, f"{source}: the model's MTP layers drafting")]


def plan_args(inp: ExportInput, view: RoleView) -> RoleArgs:
    """Every flag the plan sets for a role, and where vLLM departs from the plan."""
    _check(inp, view)
    role = view.role
    mtp, mtp_source = draft_tokens(inp, view)
    flags, notes = _parallel(view)
    batch, batch_notes = _batch(view, mtp)
    flags += batch + _mtp(inp, mtp, mtp_source)
    if role.micro_batches == 2:
        flags.append(Flag("--enable-dbo", None, f"{view.field}.micro_batches = 2"))
    if role.role != RoleKind.AGG:
        connector = json.dumps(
            {"kv_connector": "NixlConnector", "kv_role": "kv_both"}, separators=(",", ":")
        )
        flags.append(
            Flag("--kv-transfer-config", connector, f"{view.field}.role = {role.role}: NIXL KV")
        )
    return RoleArgs(flags, [], notes + batch_notes)


def _host_flags(view: RoleView, group: int, slot: int, node: int) -> list[Flag]:
    lay, s = view.layout, view.role.shape
    flags = []
    if node == 0:
        flags += [
            Flag("--host", "0.0.0.0", "deployment: listen on every interface"),
            Flag("--port", str(HTTP_PORT + slot), f"deployment: HTTP port of slot {slot}"),
        ]
    if lay.nodes > 1:
        local = lay.gpus_per_node // s.attn_tp
        flags += [
            Flag(
                "--data-parallel-size-local",
                str(local),
                f"host layout: {lay.gpus_per_node} GPUs per host / attn_tp {s.attn_tp}",
            ),
            Flag(
                "--data-parallel-address",
                f"${{{view.host_var(group)}:?}}",
                "host layout: the replica's first host coordinates its DP ranks",
            ),
            Flag("--data-parallel-rpc-port", str(RPC_PORT), "deployment: DP coordination port"),
        ]
        if node:
            flags += [
                Flag(
                    "--data-parallel-start-rank",
                    str(node * local),
                    f"host layout: host {node} runs DP ranks from {node * local}",
                ),
                Flag("--headless", None, "host layout: only the first host serves HTTP"),
            ]
    return flags


def _nixl_env(view: RoleView, group: int, slot: int, node: int) -> list[Flag]:
    if view.role.role == RoleKind.AGG:
        return []
    return [
        Flag(
            "VLLM_NIXL_SIDE_CHANNEL_HOST",
            "${HOST_IP:?set HOST_IP to the address of this host}",
            "NIXL handshake address of this host (prefill and decode hosts differ)",
        ),
        Flag(
            "VLLM_NIXL_SIDE_CHANNEL_PORT",
            str(NIXL_PORT + slot * view.role.shape.attn_dp),
            "NIXL handshake base port (vLLM adds the DP rank); slots on a host do not overlap",
        ),
    ]


MODEL_NOTE = "vLLM takes the model as its first argument: MODEL_PATH, set at the top of the script"


def launch(inp: ExportInput, view: RoleView) -> RoleLaunch:
    args = plan_args(inp, view)
    args = RoleArgs(args.flags, args.env, [MODEL_NOTE, *args.notes])
    commands = host_commands(view, SERVE, args, _host_flags, _nixl_env)
    return RoleLaunch(view, args, tuple(commands))


def _proxy_lists(views: list[RoleView], kind: RoleKind) -> tuple[tuple[str, ...], tuple[str, ...]]:
    hosts, ports = [], []
    for v in views:
        if v.role.role == kind:
            for group, slot in endpoints(v):
                hosts.append(f"${{{v.host_var(group)}:?}}")
                ports.append(str(HTTP_PORT + slot))
    return tuple(hosts), tuple(ports)


def router(inp: ExportInput, views: list[RoleView]) -> Router | None:
    """vLLM's NIXL proxy over every prefill and decode replica. vLLM documents no router for
    several aggregated replicas: the notes list their addresses for a load balancer."""
    if not any(v.role.role == RoleKind.PREFILL for v in views):
        urls = [url(v, g, s).replace(":?}", "}") for v in views for g, s in endpoints(v)]
        if len(urls) < 2:
            return None
        return Router(
            None,
            (
                "vLLM documents no router for several aggregated replicas: put an HTTP load "
                f"balancer in front of {', '.join(urls)}",
            ),
        )
    p_hosts, p_ports = _proxy_lists(views, RoleKind.PREFILL)
    d_hosts, d_ports = _proxy_lists(views, RoleKind.DECODE)
    flags = (
        Flag("--port", str(PROXY_PORT), "deployment: the proxy's port (clients connect here)"),
        Flag("--prefiller-hosts", p_hosts, "first host of every prefill replica"),
        Flag("--prefiller-ports", p_ports, "their HTTP ports"),
        Flag("--decoder-hosts", d_hosts, "first host of every decode replica"),
        Flag("--decoder-ports", d_ports, "their HTTP ports"),
    )
    notes = (
        "vLLM's docs call toy_proxy_server.py a toy proxy; it lives in vLLM's tests folder, so "
        "run it from a vLLM source checkout (VLLM_SRC); Dynamo (--format dynamo) is the "
        "production route",
    )
    return Router(Command("router", "router", (), PROXY, flags), notes)


def dynamo_worker(inp: ExportInput, view: RoleView) -> Command:
    """``dynamo.vllm`` takes vLLM's engine arguments and Dynamo's ``--disaggregation-mode``; the
    operator adds the multi-host DP ones (``--data-parallel-address``, ``-size-local``,
    ``-rpc-port``, ``-start-rank``)."""
    args = plan_args(inp, view)
    head = [Flag("--model", inp.model_path, inp.model_path_source)]
    if view.role.role != RoleKind.AGG:
        head.append(
            Flag(
                "--disaggregation-mode",
                view.role.role.value,
                f"{view.field}.role = {view.role.role} (Dynamo's worker flag)",
            )
        )
    return Command("", "every pod", tuple(args.env), DYNAMO_WORKER, tuple(head + args.flags))


ENGINE = Engine("vllm", "vLLM", SOURCES, launch, router, dynamo_worker)
