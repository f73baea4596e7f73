"""Model architecture files (`models/<name>.json`): the `ModelSpec` dataclass, loading, and the
importer that derives one from a Hugging Face `config.json` (shapes, dtypes, parameter counts,
KV-cache bytes), so every planner part reads the same numbers."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aicpp_opt import PROJECT_ROOT
from aicpp_opt.errors import InputError

MODELS_DIR = PROJECT_ROOT / "models"

BYTES_PER_PARAM: dict[str, float] = {
    "bfloat16": 2.0,
    "fp8": 1.0,
    "fp8_block": 1.0 + 4.0 / (128 * 128),
    "w4a16_mxfp4": 0.5 + 1.0 / 32,
}
"""Stored bytes per parameter per weight dtype, scales included (fp8_block: one fp32 scale per
128x128 block; mxfp4: one 8-bit scale per 32 values)."""

INDEXER_KEY_SCALE_BYTES = 4
"""DSA indexer keys are cached in fp8 with one fp32 scale per key (DeepSeek-V3.2 reference)."""


@dataclass(frozen=True)
class AttentionSpec:
    """Attention shape. `kind` is mla, dsa (MLA + sparse indexer) or gqa."""

    kind: str
    num_heads: int
    num_kv_heads: int
    head_dim: int
    q_lora_rank: int | None = None
    kv_lora_rank: int | None = None
    qk_nope_head_dim: int | None = None
    qk_rope_head_dim: int | None = None
    v_head_dim: int | None = None
    index_topk: int | None = None
    index_n_heads: int | None = None
    index_head_dim: int | None = None
    sliding_window: int | None = None
    sliding_window_layers: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class MoESpec:
    """Routed and shared experts of one MoE layer."""

    num_experts: int
    top_k: int
    expert_ffn: int
    num_shared_experts: int
    shared_ffn: int


@dataclass(frozen=True)
class DTypes:
    """Kernel dtypes the checkpoint implies (names match the cost tables' `dtype` axis)."""

    weights: str
    moe: str
    kv_cache: str
    activations: str


@dataclass(frozen=True)
class ParamCounts:
    """Parameter counts by role; per-layer entries are for one layer of that kind."""

    attention_per_layer: int
    expert: int
    shared_expert_per_layer: int
    dense_mlp_per_layer: int
    router_per_layer: int
    embedding: int
    lm_head: int
    other_per_layer: int
    final_norm: int


@dataclass(frozen=True)
class ModelSpec:
    """One model architecture, as written in `models/<name>.json`."""

    name: str
    source: str
    architecture: str
    num_layers: int
    num_dense_layers: int
    num_mtp_layers: int
    hidden_size: int
    vocab_size: int
    attention: AttentionSpec
    moe: MoESpec
    dense_ffn: int
    dtypes: DTypes
    params: ParamCounts
    bytes_per_param: dict[str, float]
    kv_cache_bytes_per_token_per_layer: int

    @property
    def num_moe_layers(self) -> int:
        return self.num_layers - self.num_dense_layers

    @property
    def total_params(self) -> int:
        """Parameters of the served model (MTP layers excluded, as published sizes do)."""
        p = self.params
        per_layer = p.attention_per_layer + p.other_per_layer
        moe_layer = self.moe.num_experts * p.expert + p.shared_expert_per_layer + p.router_per_layer
        return (
            self.num_layers * per_layer
            + self.num_dense_layers * p.dense_mlp_per_layer
            + self.num_moe_layers * moe_layer
            + p.embedding
            + p.lm_head
            + p.final_norm
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"


def available_models() -> list[str]:
    return sorted(p.stem for p in MODELS_DIR.glob("*.json"))


def load_model(name_or_path: str | Path) -> ModelSpec:
    """Read a model file by name (`models/<name>.json`) or by path."""
    path = Path(name_or_path)
    if not (path.suffix == ".json" and path.is_file()):
        path = MODELS_DIR / f"{name_or_path}.json"
    if not path.is_file():
        raise InputError(
            "model", f"unknown model {str(name_or_path)!r}; valid: {', '.join(available_models())}"
        )
    raw = json.loads(path.read_text())
    return ModelSpec(
        **{
            **raw,
            "attention": AttentionSpec(**raw["attention"]),
            "moe": MoESpec(**raw["moe"]),
            "dtypes": DTypes(**raw["dtypes"]),
            "params": ParamCounts(**raw["params"]),
        }
    )


def _need(cfg: dict[str, Any], key: str, source: str) -> Any:
    if cfg.get(key) is None:
        raise InputError(key, f"missing from {source}: a Hugging Face config.json needs it")
    return cfg[key]


def _dtypes(cfg: dict[str, Any]) -> DTypes:
    """Weight dtypes from `quantization_config` (fp8 + weight_block_size -> fp8_block)."""
    quant = cfg.get("quantization_config") or {}
    method = quant.get("quant_method")
    if method == "fp8":
        weights = "fp8_block" if quant.get("weight_block_size") else "fp8"
        return DTypes(weights=weights, moe=weights, kv_cache="bfloat16", activations="bfloat16")
    if method == "mxfp4":
        return DTypes("bfloat16", "w4a16_mxfp4", kv_cache="bfloat16", activations="bfloat16")
    if method is None:
        return DTypes("bfloat16", "bfloat16", kv_cache="bfloat16", activations="bfloat16")
    raise InputError("quantization_config.quant_method", f"unsupported {method!r}: fp8, mxfp4")


def _attention(cfg: dict[str, Any], src: str) -> tuple[AttentionSpec, int, int]:
    """Attention shape, parameters per layer and KV-cache bytes per token per layer (at 2-byte
    KV elements; the cache dtype can be changed at serving time)."""
    hidden = _need(cfg, "hidden_size", src)
    heads = _need(cfg, "num_attention_heads", src)
    if cfg.get("kv_lora_rank"):
        q_rank = cfg.get("q_lora_rank")
        kv_rank = _need(cfg, "kv_lora_rank", src)
        nope = _need(cfg, "qk_nope_head_dim", src)
        rope = _need(cfg, "qk_rope_head_dim", src)
        v_dim = _need(cfg, "v_head_dim", src)
        q_params = (
            hidden * q_rank + q_rank + q_rank * heads * (nope + rope)
            if q_rank
            else hidden * heads * (nope + rope)
        )
        params = (
            q_params
            + hidden * (kv_rank + rope)
            + kv_rank
            + kv_rank * heads * (nope + v_dim)
            + heads * v_dim * hidden
        )
        kv_bytes = (kv_rank + rope) * 2
        extra: dict[str, Any] = {}
        kind = "mla"
        if cfg.get("index_topk"):
            kind = "dsa"
            i_heads = _need(cfg, "index_n_heads", src)
            i_dim = _need(cfg, "index_head_dim", src)
            params += q_rank * i_heads * i_dim + hidden * i_dim + 2 * i_dim + hidden * i_heads
            kv_bytes += i_dim + INDEXER_KEY_SCALE_BYTES
            extra = {"index_topk": cfg["index_topk"], "index_n_heads": i_heads}
            extra["index_head_dim"] = i_dim
        spec = AttentionSpec(
            kind=kind,
            num_heads=heads,
            num_kv_heads=1,
            head_dim=kv_rank + rope,
            q_lora_rank=q_rank,
            kv_lora_rank=kv_rank,
            qk_nope_head_dim=nope,
            qk_rope_head_dim=rope,
            v_head_dim=v_dim,
            **extra,
        )
        return spec, params, kv_bytes
    kv_heads = _need(cfg, "num_key_value_heads", src)
    head_dim = cfg.get("head_dim") or hidden // heads
    bias = (heads + 2 * kv_heads) * head_dim + hidden if cfg.get("attention_bias") else 0
    qk_norm = 2 * head_dim if cfg.get("model_type", "").startswith("qwen3") else 0
    sinks = heads if cfg.get("model_type") == "gpt_oss" else 0
    params = 2 * hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim
    window = cfg.get("sliding_window") if cfg.get("layer_types") else None
    window_layers = [
        i for i, t in enumerate(cfg.get("layer_types") or []) if t == "sliding_attention"
    ]
    spec = AttentionSpec(
        kind="gqa",
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        sliding_window=window,
        sliding_window_layers=window_layers,
    )
    return spec, params + bias + qk_norm + sinks, 2 * kv_heads * head_dim * 2


def _moe(cfg: dict[str, Any], src: str) -> tuple[MoESpec, int, int, int]:
    """Routed/shared expert shape, one expert's parameters, shared and router parameters."""
    hidden = cfg["hidden_size"]
    experts = cfg.get("n_routed_experts") or cfg.get("num_experts") or cfg.get("num_local_experts")
    if not experts:
        raise InputError("n_routed_experts", f"missing from {src}: not a MoE config")
    top_k = _need(cfg, "num_experts_per_tok", src)
    gpt_oss = cfg.get("model_type") == "gpt_oss"
    ffn = cfg["intermediate_size"] if gpt_oss else _need(cfg, "moe_intermediate_size", src)
    shared = cfg.get("n_shared_experts") or 0
    expert = 3 * hidden * ffn + (2 * ffn + hidden if gpt_oss else 0)
    router = hidden * experts + (experts if gpt_oss or cfg.get("topk_method") else 0)
    spec = MoESpec(experts, top_k, ffn, shared, shared * ffn)
    return spec, expert, shared * 3 * hidden * ffn, router


def import_hf_config(path: Path, name: str | None = None) -> ModelSpec:
    """Derive a `ModelSpec` from a Hugging Face `config.json`."""
    try:
        cfg = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InputError("config", f"cannot read {path}: {err}") from err
    src = path.name
    hidden = _need(cfg, "hidden_size", src)
    layers = _need(cfg, "num_hidden_layers", src)
    vocab = _need(cfg, "vocab_size", src)
    attention, attn_params, kv_bytes = _attention(cfg, src)
    moe, expert, shared, router = _moe(cfg, src)
    dense_layers = cfg.get("first_k_dense_replace") or 0
    dense_ffn = cfg.get("intermediate_size") if dense_layers else 0
    tied = bool(cfg.get("tie_word_embeddings"))
    dtypes = _dtypes(cfg)
    params = ParamCounts(
        attention_per_layer=attn_params,
        expert=expert,
        shared_expert_per_layer=shared,
        dense_mlp_per_layer=3 * hidden * dense_ffn,
        router_per_layer=router,
        embedding=vocab * hidden,
        lm_head=0 if tied else vocab * hidden,
        other_per_layer=2 * hidden,
        final_norm=hidden,
    )
    default_name = src.removesuffix("_config.json").removesuffix(".json").split("--")[-1].lower()
    return ModelSpec(
        name=name or default_name,
        source=src,
        architecture=_need(cfg, "architectures", src)[0],
        num_layers=layers,
        num_dense_layers=dense_layers,
        num_mtp_layers=cfg.get("num_nextn_predict_layers") or 0,
        hidden_size=hidden,
        vocab_size=vocab,
        attention=attention,
        moe=moe,
        dense_ffn=dense_ffn,
        dtypes=dtypes,
        params=params,
        bytes_per_param={
            d: BYTES_PER_PARAM[d] for d in sorted({"bfloat16", dtypes.weights, dtypes.moe})
        },
        kv_cache_bytes_per_token_per_layer=kv_bytes,
    )
