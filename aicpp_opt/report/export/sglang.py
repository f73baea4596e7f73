"""SGLang: one ``python -m sglang.launch_server`` per replica and host, ``sglang_router`` in
front, and the ``dynamo.sglang`` worker arguments.

Argument names and what they count, as documented by sgl-project/sglang at the commits read:

- docs/advanced_features/server_arguments.md @004813e1: every server flag written here.
- docs/advanced_features/pd_disaggregation.md @08edc506: P/D launch, multi-host
  ``--dist-init-addr`` / ``--nnodes`` / ``--node-rank``, ``--tp-size`` spanning all GPUs with
  ``--dp-size`` attention groups.
- docs/advanced_features/expert_parallelism.md @020017c4: DeepEP needs ep_size = tp_size
  (hybrid EP x TP runs ``--moe-a2a-backend none``); ``--enable-two-batch-overlap``.
- docs/advanced_features/router.md @046ed665: ``sglang_router.launch_router --pd-disaggregation
  --prefill URL BOOTSTRAP_PORT --decode URL``, ``--worker-urls``.
- docs/basic_usage/deepseek_v32.md @01253e4e: MTP as ``--speculative-algorithm EAGLE`` with
  ``--speculative-num-steps``, ``--speculative-eagle-topk``, ``--speculative-num-draft-tokens``.
- docs/references/environment_variables.md @00126648:
  ``SGLANG_DEEPEP_NUM_MAX_DISPATCH_TOKENS_PER_RANK`` (default 128).
- Code (python/sglang/srt, read through code search; several versions agree): under DP
  attention ``--chunked-prefill-size`` (server_args ``_handle_data_parallelism``) and
  ``--max-running-requests`` (model_runner) count the whole server and are divided by
  ``--dp-size``; ``--max-prefill-tokens`` and ``--prefill-max-requests`` are per scheduler (per
  attention-DP rank); with ``--enable-mixed-chunk`` the running decode batch is taken from the
  chunk budget (schedule_policy ``PrefillAdder``); EAGLE turns mixed chunks off and sets
  num-draft-tokens = num-steps + 1 at top-k 1; two-batch overlap needs an all-to-all backend
  other than ``none``; in P/D the prefill server runs the same speculative algorithm so the
  draft model's hidden states reach decode (sgl-project/sglang PR #7242, #23918).
"""

from __future__ import annotations

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

SERVER = ("python", "-m", "sglang.launch_server")
ROUTER = ("python", "-m", "sglang_router.launch_router")
DYNAMO_WORKER = ("python3", "-m", "dynamo.sglang")
DIST_PORT = 5000
BOOTSTRAP_PORT = 8998
ROUTER_PORT = 8000
DEEPEP_LL_TOKENS = 128
"""Default of SGLANG_DEEPEP_NUM_MAX_DISPATCH_TOKENS_PER_RANK (environment_variables.md)."""
TRANSFER = Flag(
    "--disaggregation-transfer-backend",
    "nixl",
    "not a plan field: NIXL, the KV transfer SGLang, vLLM and Dynamo all document",
)
DEEPEP_MODE = {
    RoleKind.PREFILL: ("normal", "the plan prices prefill dispatch/combine in DeepEP normal mode"),
    RoleKind.DECODE: ("low_latency", "the plan prices decode dispatch/combine in DeepEP LL mode"),
    RoleKind.AGG: ("auto", "low_latency for decode batches, normal for batches with a chunk"),
}
SOURCES = (
    "sgl-project/sglang docs/advanced_features/server_arguments.md @004813e1",
    "sgl-project/sglang docs/advanced_features/pd_disaggregation.md @08edc506",
    "sgl-project/sglang docs/advanced_features/expert_parallelism.md @020017c4",
    "sgl-project/sglang docs/advanced_features/router.md @046ed665",
    "sgl-project/sglang docs/basic_usage/deepseek_v32.md @01253e4e",
    "sgl-project/sglang docs/references/environment_variables.md @00126648",
    "sgl-project/sglang python/sglang/srt server_args.py, model_runner.py, schedule_policy.py "
    "(per-rank division of --chunked-prefill-size and --max-running-requests, mixed-chunk "
    "budget; read through code search)",
)


def _parallel(view: RoleView) -> tuple[list[Flag], list[str]]:
    s, gpus, f = view.role.shape, view.role.gpus_per_replica, f"{view.field}.shape"
    flags = [
        Flag(
            "--tp-size",
            str(gpus),
            f"{f}: attn_tp x attn_dp = {s.attn_tp} x {s.attn_dp} (SGLang's TP spans every GPU "
            "of the instance)",
        )
    ]
    notes = []
    if s.attn_dp > 1:
        flags.append(Flag("--dp-size", str(s.attn_dp), f"{f}.attn_dp = {s.attn_dp}"))
        flags.append(
            Flag(
                "--enable-dp-attention",
                None,
                f"{f}.attn_dp = {s.attn_dp} > 1: attention TP = tp-size / dp-size = {s.attn_tp}",
            )
        )
    if s.moe_ep > 1:
        flags.append(
            Flag(
                "--ep-size",
                str(s.moe_ep),
                f"{f}.moe_ep = {s.moe_ep} (MoE TP = tp-size / ep-size = {s.moe_tp})",
            )
        )
    else:
        notes.append(f"{f}.moe_tp = {s.moe_tp}, moe_ep = 1: no flag, SGLang's MoE is TP by default")
    if full_ep(view):
        mode, why = DEEPEP_MODE[view.role.role]
        flags.append(
            Flag(
                "--moe-a2a-backend",
                "deepep",
                f"{f}.moe_ep = {s.moe_ep} = every GPU of the instance (DeepEP needs "
                "ep-size = tp-size)",
            )
        )
        flags.append(Flag("--deepep-mode", mode, f"{view.field}.role = {view.role.role}: {why}"))
        if view.role.role == RoleKind.AGG:
            notes.append(
                "the plan prices every aggregated iteration's dispatch with DeepEP LL mode; "
                "SGLang's auto mode uses normal mode for iterations that carry a prefill chunk"
            )
    elif s.moe_ep > 1:
        notes.append(
            f"hybrid MoE TP{s.moe_tp} x EP{s.moe_ep}: SGLang dispatches with all-gather / "
            "all-reduce (--moe-a2a-backend none); the plan priced DeepEP dispatch/combine"
        )
    return flags, notes


def _batch(view: RoleView, mtp: int) -> tuple[list[Flag], list[str]]:
    role, f, dp = view.role, view.field, view.role.shape.attn_dp
    flags: list[Flag] = []
    notes: list[str] = []
    per_rank = f"ceil({f}.batch_per_gpu x attn_tp) = {view.seqs_per_rank} sequences per rank"
    div = f" x attn_dp {dp} (SGLang divides it by dp-size)" if dp > 1 else ""
    if view.serves_decode:
        flags.append(Flag("--max-running-requests", str(view.seqs_per_rank * dp), per_rank + div))
        flags.append(
            Flag(
                "--cuda-graph-max-bs",
                str(view.seqs_per_rank),
                f"{per_rank}: CUDA graphs cover the planned decode batch",
            )
        )
    if role.role == RoleKind.PREFILL:
        budget = view.prefill_tokens_per_rank
        src = f"{f}.batch x chunk_tokens = {role.batch} x {role.chunk_tokens} per rank"
        flags.append(Flag("--prefill-max-requests", str(role.batch), f"{f}.batch per rank"))
        notes.append(
            "SGLang budgets prefill tokens per forward, not per request: one long prompt may "
            f"take the whole {budget}-token budget of a rank"
        )
    elif role.role == RoleKind.AGG and mtp == 0:
        budget = role.chunk_tokens + view.seqs_per_rank
        src = (
            f"{f}.chunk_tokens {role.chunk_tokens} + {view.seqs_per_rank} decode tokens per rank "
            "(SGLang takes the mixed-in decode batch from the chunk budget)"
        )
        flags.append(
            Flag(
                "--enable-mixed-chunk",
                None,
                f"{f}.role = agg: a prefill chunk rides each decode iteration",
            )
        )
    elif role.role == RoleKind.AGG:
        budget, src = role.chunk_tokens, f"{f}.chunk_tokens = {role.chunk_tokens} per rank"
        notes.append(
            "SGLang turns mixed chunks off under EAGLE (MTP): prefill chunks run as separate "
            "batches between decode steps, which the plan's iteration model does not assume"
        )
    else:
        return flags, notes
    flags.append(Flag("--chunked-prefill-size", str(budget * dp), src + div))
    flags.append(Flag("--max-prefill-tokens", str(budget), src))
    return flags, notes


def _mtp(n: int, source: str) -> list[Flag]:
    if not n:
        return []
    return [
        Flag("--speculative-algorithm", "EAGLE", f"{source}: the model's MTP layers drafting"),
        Flag("--speculative-num-steps", str(n), source),
        Flag("--speculative-eagle-topk", "1", f"{source}: one chain of draft tokens"),
        Flag("--speculative-num-draft-tokens", str(n + 1), f"{source}: drafts + the verified one"),
    ]


def _dispatch_env(view: RoleView, mtp: int) -> list[Flag]:
    """DeepEP's low-latency buffers hold SGLANG_DEEPEP_NUM_MAX_DISPATCH_TOKENS_PER_RANK tokens
    (128 by default); a decode batch with its MTP drafts beyond that needs it raised."""
    tokens = view.seqs_per_rank * (1 + mtp)
    if not (full_ep(view) and view.serves_decode and tokens > DEEPEP_LL_TOKENS):
        return []
    return [
        Flag(
            "SGLANG_DEEPEP_NUM_MAX_DISPATCH_TOKENS_PER_RANK",
            str(tokens),
            f"{view.seqs_per_rank} decode sequences per rank x (1 + {mtp} MTP drafts) exceed "
            f"DeepEP's default {DEEPEP_LL_TOKENS} low-latency tokens",
        )
    ]


def plan_args(inp: ExportInput, view: RoleView) -> RoleArgs:
    """Every flag and variable the plan sets for a role, and where SGLang departs from it."""
    check_common(inp, view, "SGLang", "--enable-two-batch-overlap")
    role = view.role
    mtp, mtp_source = draft_tokens(inp, view)
    flags, notes = _parallel(view)
    batch, batch_notes = _batch(view, mtp)
    flags += batch + _mtp(mtp, mtp_source)
    if role.micro_batches == 2:
        flags.append(Flag("--enable-two-batch-overlap", None, f"{view.field}.micro_batches = 2"))
    if role.role != RoleKind.AGG:
        flags.append(
            Flag("--disaggregation-mode", role.role.value, f"{view.field}.role = {role.role}")
        )
        flags.append(TRANSFER)
    return RoleArgs(flags, _dispatch_env(view, mtp), notes + batch_notes)


def _host_flags(view: RoleView, group: int, slot: int, node: int) -> list[Flag]:
    lay = view.layout
    flags = [
        Flag("--host", "0.0.0.0", "deployment: listen on every interface (the router connects)"),
        Flag("--port", str(HTTP_PORT + slot), f"deployment: HTTP port of slot {slot}"),
    ]
    if view.role.role == RoleKind.PREFILL:
        flags.append(
            Flag(
                "--disaggregation-bootstrap-port",
                str(BOOTSTRAP_PORT + slot),
                f"deployment: KV bootstrap port of slot {slot} (the router is told it)",
            )
        )
    if lay.nodes > 1:
        flags += [
            Flag(
                "--dist-init-addr",
                f"${{{view.host_var(group)}:?}}:{DIST_PORT}",
                f"host layout: {lay.nodes} hosts of {lay.gpus_per_node} GPUs per replica; "
                "the replica's first host",
            ),
            Flag("--nnodes", str(lay.nodes), "host layout: hosts per replica"),
            Flag("--node-rank", str(node), "host layout: this host's index in the replica"),
        ]
    return flags


MODEL_FLAG = Flag("--model-path", "${MODEL_PATH}", "MODEL_PATH, set at the top of the script")


def launch(inp: ExportInput, view: RoleView) -> RoleLaunch:
    args = plan_args(inp, view)
    args = RoleArgs([MODEL_FLAG, *args.flags], args.env, args.notes)
    return RoleLaunch(view, args, tuple(host_commands(view, SERVER, args, _host_flags)))


def router(inp: ExportInput, views: list[RoleView]) -> Router | None:
    """The P/D router over every prefill and decode replica, or a load-balancing router over
    several aggregated replicas (none for a single replica)."""
    flags: list[Flag] = []
    notes: list[str] = []
    if any(v.role.role == RoleKind.PREFILL for v in views):
        flags.append(Flag("--pd-disaggregation", None, "mode has prefill and decode roles"))
        for v in views:
            kind = v.role.role
            for group, slot in endpoints(v):
                word = url(v, group, slot)
                if kind == RoleKind.PREFILL:
                    value: tuple[str, ...] = (word, str(BOOTSTRAP_PORT + slot))
                    flags.append(Flag("--prefill", value, f"{v.field}: a prefill replica"))
                else:
                    flags.append(Flag("--decode", (word,), f"{v.field}: a decode replica"))
        decode_roles = [v.role.id for v in views if v.role.role == RoleKind.DECODE]
        if len(decode_roles) > 1:
            notes.append(
                f"the router balances over the replicas of every decode role ({decode_roles}); "
                "it does not hold each role to the plan's share of the traffic"
            )
    else:
        urls = tuple(url(v, g, s) for v in views for g, s in endpoints(v))
        if len(urls) < 2:
            return None
        flags.append(Flag("--worker-urls", urls, "every aggregated replica"))
    flags += [
        Flag("--host", "0.0.0.0", "deployment: the router's listen address"),
        Flag("--port", str(ROUTER_PORT), "deployment: the router's port (clients connect here)"),
    ]
    return Router(Command("router", "router", (), ROUTER, tuple(flags)), tuple(notes))


def dynamo_worker(inp: ExportInput, view: RoleView) -> Command:
    """``dynamo.sglang`` takes SGLang's server arguments; the operator adds the multi-host
    ones (``--dist-init-addr``, ``--nnodes``, ``--node-rank``)."""
    args = plan_args(inp, view)
    model = [
        Flag("--model-path", inp.model_path, inp.model_path_source),
        Flag("--served-model-name", inp.model_path, "the name clients ask the frontend for"),
        Flag("--skip-tokenizer-init", None, "Dynamo's frontend tokenizes"),
        Flag("--host", "0.0.0.0", "deployment: listen on every interface"),
    ]
    if view.role.role != RoleKind.AGG:
        model.append(
            Flag("--disaggregation-bootstrap-port", str(BOOTSTRAP_PORT), "deployment: KV bootstrap")
        )
    return Command("", "every pod", tuple(args.env), DYNAMO_WORKER, tuple(model + args.flags))


ENGINE = Engine("sglang", "SGLang", SOURCES, launch, router, dynamo_worker)
