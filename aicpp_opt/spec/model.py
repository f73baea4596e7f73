"""Model architecture files (`models/<name>.json`): the `ModelSpec` dataclass and its loading,
every field validated like an instance's (types, ranges, the relations between fields), so every
planner part reads the same, sane numbers. `aicpp_opt.spec.hf_config` derives one from a Hugging
Face `config.json`."""

from __future__ import annotations

import json
from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from aicpp_opt.errors import InputError, brief, key_name
from aicpp_opt.jsonio import read_json
from aicpp_opt.paths import data_dir, safe_name
from aicpp_opt.spec.limits import (
    MAX_EXPERTS,
    MAX_FFN,
    MAX_HEAD_DIM,
    MAX_HEADS,
    MAX_HIDDEN,
    MAX_LAYERS,
    MAX_TOKENS,
    MAX_VOCAB,
)
from aicpp_opt.spec.workload import integer, num, only_keys, text

MODELS_DIR = data_dir("models")

BYTES_PER_PARAM: dict[str, float] = {
    "bfloat16": 2.0,
    "fp8": 1.0,
    "fp8_block": 1.0 + 4.0 / (128 * 128),
    "w4a16_mxfp4": 0.5 + 1.0 / 32,
    "nvfp4": 0.5 + 1.0 / 16,
}
"""Stored bytes per parameter per weight dtype, scales included (fp8_block: one fp32 scale per
128x128 block; mxfp4: one 8-bit scale per 32 values; nvfp4: one fp8 scale per 16 values)."""
KV_DTYPES = {"bfloat16": 2, "fp8": 1}
"""KV-cache dtypes the attention tables measure, with their bytes per element."""
ACTIVATION_DTYPES = ("bfloat16",)
ATTENTION_KINDS = ("mla", "dsa", "gqa")
MAX_PARAMS = 10**13
"""Parameters of one role of a model (10 trillion)."""

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


def model_path(name_or_path: str | Path) -> Path:
    """A ``.json`` path as given, else ``models/<name>.json`` of the shipped models."""
    if str(name_or_path).endswith(".json"):
        return Path(name_or_path)
    name = str(name_or_path)
    path = MODELS_DIR / f"{safe_name(name, 'model')}.json"
    if not path.is_file():
        raise InputError(
            "model", f"unknown model {brief(name)}; valid: {', '.join(available_models())}"
        )
    return path


def load_model(name_or_path: str | Path) -> ModelSpec:
    """Read and validate a model file by name (`models/<name>.json`) or by path."""
    return parse_model(read_json(model_path(name_or_path), "model"))


def _required(f: Field) -> bool:
    return f.default is MISSING and f.default_factory is MISSING


def _keys(data: Any, cls: type, where: str) -> dict:
    if not isinstance(data, dict):
        raise InputError(where, "must be a JSON object")
    only_keys(data, {f.name for f in fields(cls)}, where)
    missing = [f.name for f in fields(cls) if f.name not in data and _required(f)]
    if missing:
        raise InputError(f"{where}.{missing[0]}", "is required")
    return data


def _optional(data: dict, key: str, where: str, hi: int) -> int | None:
    v = data.get(key)
    return None if v is None else integer(v, f"{where}.{key}", hi=hi)


def _attention(data: Any, num_layers: int) -> AttentionSpec:
    w = "model.attention"
    a = _keys(data, AttentionSpec, w)
    kind = text(a["kind"], f"{w}.kind", ATTENTION_KINDS)
    heads = integer(a["num_heads"], f"{w}.num_heads", hi=MAX_HEADS)
    kv = integer(a["num_kv_heads"], f"{w}.num_kv_heads", hi=heads)
    if heads % kv:
        raise InputError(f"{w}.num_kv_heads", f"{kv} must divide the {heads} attention heads")
    ranks = {
        k: _optional(a, k, w, MAX_FFN)
        for k in (
            "q_lora_rank",
            "kv_lora_rank",
            "qk_nope_head_dim",
            "qk_rope_head_dim",
            "v_head_dim",
            "index_topk",
            "index_n_heads",
            "index_head_dim",
        )
    }
    needed = {"mla": ranks.keys() - {"q_lora_rank"} - {k for k in ranks if "index" in k}}
    needed["dsa"] = needed["mla"] | {"index_topk", "index_n_heads", "index_head_dim"}
    missing = sorted(k for k in needed.get(kind, ()) if ranks[k] is None)
    if missing:
        raise InputError(f"{w}.{missing[0]}", f"is required for {kind} attention")
    layers = a.get("sliding_window_layers", [])
    if not isinstance(layers, list) or len(set(layers)) != len(layers):
        raise InputError(f"{w}.sliding_window_layers", "must be a list of distinct layer indices")
    for i, layer in enumerate(layers):
        integer(layer, f"{w}.sliding_window_layers[{i}]", lo=0, hi=num_layers - 1)
    return AttentionSpec(
        kind=kind,
        num_heads=heads,
        num_kv_heads=kv,
        head_dim=integer(a["head_dim"], f"{w}.head_dim", hi=MAX_HEAD_DIM),
        sliding_window=_optional(a, "sliding_window", w, MAX_TOKENS),
        sliding_window_layers=layers,
        **ranks,
    )


def _moe(data: Any) -> MoESpec:
    w = "model.moe"
    m = _keys(data, MoESpec, w)
    experts = integer(m["num_experts"], f"{w}.num_experts", hi=MAX_EXPERTS)
    return MoESpec(
        num_experts=experts,
        top_k=integer(m["top_k"], f"{w}.top_k", hi=experts),
        expert_ffn=integer(m["expert_ffn"], f"{w}.expert_ffn", hi=MAX_FFN),
        num_shared_experts=integer(
            m["num_shared_experts"], f"{w}.num_shared_experts", lo=0, hi=MAX_EXPERTS
        ),
        shared_ffn=integer(m["shared_ffn"], f"{w}.shared_ffn", lo=0, hi=MAX_FFN),
    )


def _dtypes(data: Any) -> DTypes:
    w = "model.dtypes"
    d = _keys(data, DTypes, w)
    weight_dtypes = tuple(BYTES_PER_PARAM)
    return DTypes(
        weights=text(d["weights"], f"{w}.weights", weight_dtypes),
        moe=text(d["moe"], f"{w}.moe", weight_dtypes),
        kv_cache=text(d["kv_cache"], f"{w}.kv_cache", tuple(KV_DTYPES)),
        activations=text(d["activations"], f"{w}.activations", ACTIVATION_DTYPES),
    )


def _bytes_per_param(data: Any, dtypes: DTypes) -> dict[str, float]:
    w = "model.bytes_per_param"
    if not isinstance(data, dict):
        raise InputError(w, "must map weight dtypes to stored bytes per parameter")
    for dtype in {"bfloat16", dtypes.weights, dtypes.moe}:
        if dtype not in data:
            raise InputError(f"{w}.{dtype}", "is required (a dtype the model's weights use)")
    return {k: num(v, f"{w}.{key_name(k)}", strict=True, hi=8) for k, v in data.items()}


def parse_model(raw: Any) -> ModelSpec:
    """A validated model file: known fields only, every count an integer in range, top-k within
    the experts, KV heads dividing the heads, dense layers within the layers, dtypes the cost
    tables name."""
    m = _keys(raw, ModelSpec, "model")
    layers = integer(m["num_layers"], "model.num_layers", hi=MAX_LAYERS)
    dense = integer(m["num_dense_layers"], "model.num_dense_layers", lo=0, hi=layers)
    dense_ffn = integer(m["dense_ffn"], "model.dense_ffn", lo=1 if dense else 0, hi=MAX_FFN)
    dtypes = _dtypes(m["dtypes"])
    p = _keys(m["params"], ParamCounts, "model.params")
    if not isinstance(m["source"], str) or len(m["source"]) > 1000:
        raise InputError("model.source", "must be a string of at most 1000 characters")
    return ModelSpec(
        name=text(m["name"], "model.name"),
        source=m["source"],
        architecture=text(m["architecture"], "model.architecture"),
        num_layers=layers,
        num_dense_layers=dense,
        num_mtp_layers=integer(m["num_mtp_layers"], "model.num_mtp_layers", lo=0, hi=MAX_LAYERS),
        hidden_size=integer(m["hidden_size"], "model.hidden_size", hi=MAX_HIDDEN),
        vocab_size=integer(m["vocab_size"], "model.vocab_size", hi=MAX_VOCAB),
        attention=_attention(m["attention"], layers),
        moe=_moe(m["moe"]),
        dense_ffn=dense_ffn,
        dtypes=dtypes,
        params=ParamCounts(
            **{
                f.name: integer(p[f.name], f"model.params.{f.name}", lo=0, hi=MAX_PARAMS)
                for f in fields(ParamCounts)
            }
        ),
        bytes_per_param=_bytes_per_param(m["bytes_per_param"], dtypes),
        kv_cache_bytes_per_token_per_layer=integer(
            m["kv_cache_bytes_per_token_per_layer"],
            "model.kv_cache_bytes_per_token_per_layer",
            hi=2**30,
        ),
    )
