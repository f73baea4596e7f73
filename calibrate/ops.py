"""What each cost-table op is made of: which aiconfigurator-core parquet file feeds it, how its
columns map onto the contract's axes and units, what the measured kernel covers, and which
rows are kept (the shipped models' shapes)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from calibrate.nccl_reference import DTYPE_BYTES as NCCL_DTYPE_BYTES
from calibrate.needs import Needs

DEEPEP_NORMAL_SMS = 20
"""DeepEP's default `Buffer.num_sms`: the normal-mode kernels run on this many SMs unless a
deployment tunes it, so the table keeps the rows measured at it."""

Extract = Callable[[list[pd.DataFrame], Needs], pd.DataFrame]

PHASES = ("generation", "context")
"""Order of the (generation, context) file pairs of the wide-EP tables."""

DTYPES = ("bfloat16", "fp8", "fp8_block", "int4_wo", "nvfp4", "w4a16_mxfp4", "w4a8_mxfp4_mxfp8")
"""Kernel dtype names of the tables (and of model files' `dtypes`)."""

CATEGORICAL: dict[str, tuple[str, ...] | re.Pattern] = {
    "dtype": DTYPES,
    "gemm_dtype": DTYPES,
    "kv_dtype": ("bfloat16", "fp8"),
    "distribution": re.compile(r"balanced|power_law_\d+(\.\d+)?"),
    "mode": ("low_latency", "normal"),
    "phase": PHASES,
}
"""The axes whose values are names, and the names (or their form) each accepts; every other
axis is a whole number."""


@dataclass(frozen=True)
class OpSource:
    """One op: where its measurements live and how they become contract rows."""

    op: str
    family: str
    files: tuple[str, ...]
    load_axis: str
    axes: tuple[str, ...]
    extract: Extract
    covers: str
    frameworks: tuple[tuple[str, str], ...]
    """(framework folder, why) in order of preference; the first with rows wins."""
    filter: str
    defaults: tuple[tuple[str, object], ...] = ()
    """Axis values a query may omit (extensions of the contract's axes)."""
    fill_axis: str | None = None
    """When set, older versions add their rows for values of this axis the newest version lacks
    (e.g. multi-node EP degrees measured only by an older release)."""


def _out(df: pd.DataFrame, columns: dict[str, str], latency: pd.Series) -> pd.DataFrame:
    out = pd.DataFrame({new: df[old].to_numpy() for new, old in columns.items()})
    out["latency_ms"] = latency.to_numpy(dtype=float)
    return out


def gemm(dfs: list[pd.DataFrame], needs: Needs) -> pd.DataFrame:
    (df,) = dfs
    cols = {"m": "m", "n": "n", "k": "k", "dtype": "gemm_dtype"}
    return _out(df, cols, df["latency"])


ARCH_KIND = {"DeepseekV32ForCausalLM": "dsa", "DeepseekV3ForCausalLM": "mla"}


def _module(df: pd.DataFrame, needs: Needs, arch: str, op_name: str) -> pd.DataFrame:
    dtypes = needs.attention_dtypes(ARCH_KIND[arch])
    keep = (df["architecture"] == arch) & (df["op_name"] == op_name)
    return df[keep & df["gemm_type"].isin(dtypes)]


def _module_generation(arch: str, op_name: str) -> Extract:
    def extract(dfs: list[pd.DataFrame], needs: Needs) -> pd.DataFrame:
        df = _module(dfs[0], needs, arch, op_name)
        cols = {"batch": "batch_size", "num_heads": "num_heads", "kv_dtype": "kv_cache_dtype"}
        cols |= {"context": "step", "gemm_dtype": "gemm_type"}
        return _out(df, cols, df["latency"])

    return extract


def _module_context(arch: str, op_name: str) -> Extract:
    def extract(dfs: list[pd.DataFrame], needs: Needs) -> pd.DataFrame:
        df = _module(dfs[0], needs, arch, op_name)
        df = df[df["step"] == 0]
        cols = {"isl": "isl", "num_heads": "num_heads", "kv_dtype": "kv_cache_dtype"}
        cols |= {"batch": "batch_size", "gemm_dtype": "gemm_type"}
        return _out(df, cols, df["latency"])

    return extract


def _gqa_rows(df: pd.DataFrame, needs: Needs) -> pd.DataFrame:
    shapes = needs.gqa_shapes_per_gpu()
    key = list(zip(df["num_heads"], df["num_key_value_heads"], df["head_dim"], strict=True))
    keep = pd.Series([k in shapes for k in key], index=df.index)
    return df[keep & df["window_size"].isin(needs.gqa_windows())]


def attention_generation(dfs: list[pd.DataFrame], needs: Needs) -> pd.DataFrame:
    df = _gqa_rows(dfs[0], needs)
    df = df.assign(context=df["isl"] + df["step"])
    cols = {"batch": "batch_size", "num_heads": "num_heads", "num_kv_heads": "num_key_value_heads"}
    cols |= {"head_dim": "head_dim", "kv_dtype": "kv_cache_dtype", "context": "context"}
    cols |= {"window": "window_size"}
    return _out(df, cols, df["latency"])


def attention_context(dfs: list[pd.DataFrame], needs: Needs) -> pd.DataFrame:
    df = _gqa_rows(dfs[0], needs)
    df = df[(df["step"] == 0) & (df["attn_dtype"] == "bfloat16")]
    cols = {"isl": "isl", "num_heads": "num_heads", "num_kv_heads": "num_key_value_heads"}
    cols |= {"head_dim": "head_dim", "kv_dtype": "kv_cache_dtype", "batch": "batch_size"}
    cols |= {"window": "window_size"}
    return _out(df, cols, df["latency"])


_MOE_COLS = {"tokens": "num_tokens", "hidden": "hidden_size", "inter": "inter_size"}
_MOE_COLS |= {"topk": "topk", "num_experts": "num_experts", "tp": "moe_tp_size"}
_MOE_COLS |= {"ep": "moe_ep_size", "distribution": "distribution", "dtype": "moe_dtype"}


def _shipped_moe(out: pd.DataFrame, needs: Needs) -> pd.DataFrame:
    shapes = needs.moe_shapes()
    key = zip(out["hidden"], out["inter"], out["topk"], out["num_experts"], strict=True)
    return out[[k in shapes for k in key]]


def moe(dfs: list[pd.DataFrame], needs: Needs) -> pd.DataFrame:
    (df,) = dfs
    return _shipped_moe(_out(df, _MOE_COLS, df["latency"]), needs)


def moe_wideep(dfs: list[pd.DataFrame], needs: Needs) -> pd.DataFrame:
    """Both phases' DeepEP-layout expert tables; EP-only (moe TP 1), `uniform` renamed to the
    `moe` table's `balanced` (aiconfigurator treats the two names as one distribution)."""
    cols = {k: v for k, v in _MOE_COLS.items() if k != "tp"}
    parts = []
    for phase, df in zip(PHASES, dfs, strict=True):
        df = df[df["moe_tp_size"] == 1]
        out = _out(df, cols, df["latency"]).assign(phase=phase)
        parts.append(out.replace({"distribution": {"uniform": "balanced"}}))
    return _shipped_moe(pd.concat(parts, ignore_index=True), needs)


def shared_expert(dfs: list[pd.DataFrame], needs: Needs) -> pd.DataFrame:
    cols = {"tokens": "num_token", "hidden": "hidden_size", "inter": "intermediate_size"}
    cols |= {"dtype": "quant_type"}
    parts = [
        _out(df, cols, df["avg_ms"]).assign(phase=p) for p, df in zip(PHASES, dfs, strict=True)
    ]
    out = pd.concat(parts, ignore_index=True)
    shapes = needs.shared_shapes()
    return out[[k in shapes for k in zip(out["hidden"], out["inter"], strict=True)]]


def _nccl(op_name: str) -> Extract:
    def extract(dfs: list[pd.DataFrame], needs: Needs) -> pd.DataFrame:
        (df,) = dfs
        df = df[(df["op_name"] == op_name) & (df["nccl_dtype"] == "half")]
        df = df.assign(bytes=df["message_size"] * NCCL_DTYPE_BYTES["half"])
        return _out(df, {"bytes": "bytes", "num_gpus": "num_gpus"}, df["latency"])

    return extract


def custom_all_reduce(dfs: list[pd.DataFrame], needs: Needs) -> pd.DataFrame:
    (df,) = dfs
    df = df[df["allreduce_dtype"] == "bfloat16"]
    if "backend" in df.columns and df["backend"].str.endswith("graph").any():
        df = df[df["backend"].str.endswith("graph")]
    df = df.assign(bytes=df["message_size"] * 2)
    return _out(df, {"bytes": "bytes", "num_gpus": "num_gpus"}, df["latency"])


def _this_gpu(df: pd.DataFrame, needs: Needs) -> pd.DataFrame:
    """Rows measured on the system's own GPU (some files mix in another GPU's rows)."""
    return df[df["device"].str.split().str[-1] == needs.gpu]


def _deepep(phase: str) -> Extract:
    def extract(dfs: list[pd.DataFrame], needs: Needs) -> pd.DataFrame:
        ll, normal = (_this_gpu(df, needs) for df in dfs)
        normal = normal[
            (normal["dispatch_sms"] == DEEPEP_NORMAL_SMS)
            & (normal["combine_sms"] == DEEPEP_NORMAL_SMS)
        ]
        normal_us = normal[f"{phase}_transmit_us"] + normal[f"{phase}_notify_us"].fillna(0.0)
        parts = []
        for df, mode, us in (
            (ll, "low_latency", ll[f"{phase}_avg_t_us"]),
            (normal, "normal", normal_us),
        ):
            df = df.assign(ep=df["node_num"] * needs.gpus_per_node, mode=mode)
            cols = {"tokens": "num_token", "hidden": "hidden_size", "topk": "num_topk"}
            cols |= {"num_experts": "num_experts", "ep": "ep", "mode": "mode"}
            parts.append(_out(df, cols, us / 1000.0))
        out = pd.concat(parts, ignore_index=True)
        shapes = {(h, k, e) for h, _, k, e in needs.moe_shapes()}
        key = zip(out["hidden"], out["topk"], out["num_experts"], strict=True)
        return out[[k in shapes for k in key]]

    return extract


_GEMM_COVERS = (
    "One dense GEMM C[m,n] = A[m,k] @ W[k,n] on one GPU (activation quantization included for "
    "fp8 dtypes; fp8_block = DeepGEMM/CUTLASS 1x128 activation, 128x128 weight block scales). "
    "m = tokens on this GPU; n, k as seen by this GPU (divide by TP yourself)."
)
_MLA_GEN_COVERS = (
    "Whole MLA attention block of one decode step on one GPU, {arch} dims (hidden 7168, q_lora "
    "1536, kv_lora 512, nope 128, rope 64, v 128): q_a/q_b/kv_a projections, kv_b absorption "
    "BMMs, {kernel}, o_proj, at `num_heads` heads per GPU (heads / attention TP). Excludes "
    "norms, residual adds and TP collectives. batch = sequences; context = tokens already "
    "in the KV cache per sequence (the table's `step`). gemm_dtype = projection weight dtype."
)
_MLA_CTX_COVERS = (
    "Whole MLA attention block of one prefill on one GPU, {arch} dims: q/kv projections, "
    "{kernel}, o_proj, at `num_heads` heads per GPU. isl = new tokens per sequence, batch = "
    "sequences, no cached prefix (step 0 rows only). Excludes norms and TP collectives."
)
_GQA_COVERS = (
    "The attention kernel only ({phase}) on one GPU: no QKV/O projections (use `gemm`), no "
    "RoPE/norms. num_heads / num_kv_heads are per GPU (after TP). {load}. window = sliding "
    "window length in tokens, 0 for full attention (gpt-oss sliding layers use window 128)."
)
_MOE_COVERS = (
    "Routed-expert compute of one MoE layer on one GPU (grouped GEMMs up/gate + activation + "
    "down, with token permute/unpermute and top-k weighting) for the num_experts/ep experts "
    "this GPU holds, at moe TP `tp` (inter split tp ways). Excludes the router GEMM, the "
    "shared expert (use `gemm`) and all communication (use moe_dispatch/moe_combine or "
    "NCCL). tokens = tokens entering the layer across the whole EP group before dispatch "
    "(per-rank tokens x attention DP), routed top-k over all num_experts with the given "
    "distribution (balanced, or power-law skew 1.01 / 1.2); the latency is the GPU that "
    "processes its share of them."
)
_NCCL_COVERS = (
    "NCCL {name} over num_gpus GPUs in one NVLink domain (nccl-tests style, fp16 elements). "
    "bytes = total message bytes (the full buffer: all_gather output, reduce_scatter input, "
    "all_reduce buffer, alltoall buffer per rank), converted from the table's element count "
    "x 2 bytes."
)
_MOE_WIDEEP_COVERS = (
    "Routed-expert compute of one MoE layer on one GPU as SGLang wide-EP runs it (DeepEPMoE: "
    "DeepGEMM fp8 grouped GEMMs up/gate + SiLU + down on the num_experts/ep local experts; "
    "phase generation = the masked layout after DeepEP low-latency dispatch, context = the "
    "contiguous layout after DeepEP normal dispatch). EP only (moe TP 1). Excludes the router, "
    "the shared expert (use shared_expert or gemm) and the DeepEP dispatch/combine "
    "(aiconfigurator composes those as separate moe_dispatch/moe_combine ops around this one). "
    "tokens = tokens entering the layer across the whole EP group (per-rank tokens x attention "
    "DP, aiconfigurator's query scaling), routed top-k with the given distribution (balanced = "
    "the table's `uniform`; power_law_<a>); the latency is the GPU that processes its share."
)
_SHARED_COVERS = (
    "The whole shared-expert MLP of one MoE layer on one GPU at full size (wide-EP attention-DP "
    "mode, not TP-split): fused gate/up fp8 GEMM, SiLU x mul, down GEMM (SGLang DeepSeek-V3 "
    "MLP). tokens = tokens on this GPU; phase generation (CUDA graph) or context."
)
_DEEPEP_COVERS = (
    "DeepEP {phase} (SGLang wide-EP) over ep GPUs = nodes x gpus_per_node (one node: NVLink; "
    "several: NVLink inside a node + the system's scale-out, InfiniBand RDMA, between nodes): "
    "low_latency = the LL kernel (fp8 dispatch, bf16 combine, CUDA-graph friendly); normal = "
    "the high-throughput kernel at the default 20 SMs, notify + transmit time. tokens = tokens "
    "per rank before dispatch; topk and num_experts as routed. Multi-node rows (ep above one "
    "node) come from the older release that measured them, on this system's GPU only."
)

_ATTN_PREF = (
    (
        "vllm",
        "module tables cover num_heads 1..128 per GPU (attention TP up to 128 or DP) and "
        "both kv-cache dtypes (bfloat16, fp8) with fp8_block projections",
    ),
    ("trtllm", "module tables with heads 1..128 (bfloat16 KV only for DSA)"),
    ("sglang", "module tables with heads 16..128 only"),
)


def _attention_modules(
    kind: str,
    family: str,
    arch: str,
    label: str,
    gen_kernel: str,
    ctx_kernel: str,
    frameworks: tuple[tuple[str, str], ...],
    gen_filter_note: str = "",
) -> tuple[OpSource, OpSource]:
    """The `<kind>_generation` and `<kind>_context` ops of one MLA-family attention module
    (aiconfigurator's `<kind>_<phase>_module` tables for architecture `arch`)."""
    phases = (
        ("generation", "batch", "context", _module_generation, _MLA_GEN_COVERS, gen_kernel),
        ("context", "isl", "batch", _module_context, _MLA_CTX_COVERS, ctx_kernel),
    )
    filter_note = {"generation": gen_filter_note, "context": ", step 0"}
    gen, ctx = (
        OpSource(
            f"{kind}_{phase}",
            family,
            (f"{kind}_{phase}_module_perf.parquet",),
            load,
            ("num_heads", "kv_dtype", other, "gemm_dtype"),
            extract(arch, f"{kind}_{phase}_module"),
            covers.format(arch=label, kernel=kernel),
            frameworks,
            f"architecture {arch}, op {kind}_{phase}_module{filter_note[phase]}",
            (("gemm_dtype", "fp8_block"),),
        )
        for phase, load, other, extract, covers, kernel in phases
    )
    return gen, ctx


SOURCES: tuple[OpSource, ...] = (
    OpSource(
        "gemm",
        "gemm",
        ("gemm_perf.parquet",),
        "m",
        ("n", "k", "dtype"),
        gemm,
        _GEMM_COVERS,
        (
            (
                "trtllm",
                "full n,k grid, one kernel path per dtype, and the lowest held-out error "
                "on h200_sxm (1.8% median vs 3.4% vLLM, 7.5% SGLang DeepGEMM whose m/m+1 tile "
                "edges differ by 14% median)",
            ),
            ("sglang", "full n,k grid; one kernel per dtype (DeepGEMM for fp8_block)"),
            ("vllm", "full n,k grid; kernel chosen by vLLM per shape"),
        ),
        "all rows (every n, k, dtype)",
    ),
    *_attention_modules(
        "dsa",
        "sparse_attention",
        "DeepseekV32ForCausalLM",
        "DeepSeek-V3.2",
        "the lightning indexer (wq_b, wk, weights_proj, fp8 MQA logits, top-2048 selection) "
        "and FlashMLA sparse attention over the selected 2048 tokens",
        "the lightning indexer and sparse (top-2048) attention",
        _ATTN_PREF,
        " (indexer included), gemm_type in the shipped DSA models' weight dtypes",
    ),
    *_attention_modules(
        "mla",
        "mla",
        "DeepseekV3ForCausalLM",
        "DeepSeek-V3/R1 (Kimi-K2 shares the dims)",
        "dense MLA decode attention (FlashMLA)",
        "dense causal MLA prefill attention",
        _ATTN_PREF,
    ),
    OpSource(
        "attention_generation",
        "attention",
        ("generation_attention_perf.parquet",),
        "batch",
        ("num_heads", "num_kv_heads", "head_dim", "kv_dtype", "context", "window"),
        attention_generation,
        _GQA_COVERS.format(
            phase="decode, one new token per sequence",
            load="batch = sequences; context = KV length (table isl + step)",
        ),
        (
            (
                "trtllm",
                "kv heads up to 64 per GPU, head_dim 64/128, windows 0/128/8192, both KV dtypes",
            ),
            ("sglang", "kv heads up to 64 per GPU, both KV dtypes"),
            ("vllm", "kv heads only 1..8 per GPU"),
        ),
        "(heads, kv heads, head_dim) per GPU of the shipped GQA models at TP 1..64; windows 0 "
        "and the models' sliding windows",
        (("window", 0),),
    ),
    OpSource(
        "attention_context",
        "attention",
        ("context_attention_perf.parquet",),
        "isl",
        ("num_heads", "num_kv_heads", "head_dim", "kv_dtype", "batch", "window"),
        attention_context,
        _GQA_COVERS.format(
            phase="prefill, causal, no cached prefix",
            load="isl = new tokens per sequence; batch = sequences",
        ),
        (
            ("trtllm", "kv heads up to 64 per GPU, both KV dtypes"),
            ("sglang", "kv heads up to 96 per GPU, both KV dtypes"),
            ("vllm", "kv heads only 1..8 per GPU"),
        ),
        "as attention_generation; bfloat16 attention math, step 0",
        (("window", 0),),
    ),
    OpSource(
        "moe",
        "moe",
        ("moe_perf.parquet",),
        "tokens",
        ("hidden", "inter", "topk", "num_experts", "tp", "ep", "distribution", "dtype"),
        moe,
        _MOE_COVERS,
        (
            (
                "sglang",
                "one fused kernel family for every dtype and the full TP x EP grid "
                "(TP 1..16, EP 1..256), three routing distributions",
            ),
            ("vllm", "EP>1 only at TP 1"),
            ("trtllm", "few shapes in the newest version"),
        ),
        "(hidden, inter, topk, num_experts) of the shipped models; every dtype, TP, EP and "
        "distribution measured",
    ),
    OpSource(
        "moe_wideep",
        "moe",
        ("wideep_generation_moe_perf.parquet", "wideep_context_moe_perf.parquet"),
        "tokens",
        ("hidden", "inter", "topk", "num_experts", "ep", "distribution", "dtype", "phase"),
        moe_wideep,
        _MOE_WIDEEP_COVERS,
        (("sglang", "the only wide-EP (DeepEP + DeepGEMM) expert tables"),),
        "(hidden, inter, topk, num_experts) of the shipped models; moe_tp_size 1; every EP, "
        "distribution and both phases measured",
    ),
    OpSource(
        "shared_expert",
        "mlp",
        ("wideep_generation_mlp_perf.parquet", "wideep_context_mlp_perf.parquet"),
        "tokens",
        ("hidden", "inter", "dtype", "phase"),
        shared_expert,
        _SHARED_COVERS,
        (("sglang", "the only shared-expert MLP tables (SGLang wide-EP)"),),
        "(hidden, shared ffn) of the shipped models with shared experts; both phases",
    ),
    *(
        OpSource(
            name,
            "comm",
            ("nccl_perf.parquet",),
            "bytes",
            ("num_gpus",),
            _nccl(name),
            _NCCL_COVERS.format(name=name),
            (("nccl", "the NCCL tables"),),
            f"op_name {name}, nccl_dtype half",
        )
        for name in ("all_reduce", "all_gather", "reduce_scatter", "alltoall")
    ),
    OpSource(
        "custom_all_reduce",
        "comm",
        ("custom_allreduce_perf.parquet",),
        "bytes",
        ("num_gpus",),
        custom_all_reduce,
        "One-shot/two-shot custom all-reduce inside one NVLink domain (bf16), CUDA-graph mode "
        "where the table has both; bytes = buffer bytes (table elements x 2).",
        (
            (
                "trtllm",
                "TRT-LLM custom all-reduce: same 2/4/8-GPU coverage as SGLang and vLLM, "
                "lowest held-out error on h200_sxm",
            ),
            ("sglang", "SGLang custom all-reduce, CUDA-graph rows"),
            ("vllm", "vLLM custom all-reduce"),
        ),
        "allreduce_dtype bfloat16; backend *_graph when present",
    ),
    *(
        OpSource(
            f"moe_{phase}",
            "comm",
            ("wideep_deepep_ll_perf.parquet", "wideep_deepep_normal_perf.parquet"),
            "tokens",
            ("hidden", "topk", "num_experts", "ep", "mode"),
            _deepep(phase),
            _DEEPEP_COVERS.format(phase=phase),
            (("sglang", "the only DeepEP low-latency + normal tables"),),
            f"{phase} columns; normal mode at {DEEPEP_NORMAL_SMS} SMs; shipped models' "
            "(hidden, topk, num_experts); device = this system's GPU; EP degrees missing from "
            "the newest release filled from older ones",
            fill_axis="ep",
        )
        for phase in ("dispatch", "combine")
    ),
)

OPS: dict[str, OpSource] = {s.op: s for s in SOURCES}
