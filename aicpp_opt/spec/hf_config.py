"""`aicpp-opt model import`: a `ModelSpec` from a Hugging Face `config.json` (shapes, dtypes,
parameter counts, KV-cache bytes). Every field read is type- and range-checked under its Hugging
Face name, and the result is validated like any model file.

Quantisation: `quantization_config` of the config (fp8, fp8 with weight blocks, mxfp4), or a
ModelOpt checkpoint: `hf_quant_config.json` beside the config (`<prefix>_hf_quant_config.json`
for `<prefix>_config.json`) or `quant_method: modelopt` in the config. ModelOpt NVFP4 maps to the
cost tables' `nvfp4` (routed experts; the other weights too unless the checkpoint excludes the
attention modules, which then stay bfloat16), FP8 to `fp8`, an FP8 KV cache to `fp8`; any other
scheme is refused with its name."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from aicpp_opt.errors import InputError, brief
from aicpp_opt.jsonio import read_json
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
from aicpp_opt.spec.model import (
    BYTES_PER_PARAM,
    INDEXER_KEY_SCALE_BYTES,
    KV_DTYPES,
    AttentionSpec,
    DTypes,
    ModelSpec,
    MoESpec,
    ParamCounts,
    parse_model,
)

Config = dict[str, Any]


class Reader:
    """Typed access to one config's fields; errors name the field and the file."""

    def __init__(self, cfg: Config, src: str):
        self.cfg, self.src = cfg, src

    def fail(self, key: str, message: str) -> InputError:
        return InputError(key, f"{message} ({self.src})")

    def int(self, key: str, hi: int, lo: int = 1, default: int | None = None) -> int:
        """An integer field; absent or null gives ``default`` (required when None)."""
        v = self.cfg.get(key)
        if v is None:
            if default is None:
                raise self.fail(key, "missing: a Hugging Face config.json needs it")
            return default
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(key, f"must be an integer, got {brief(v)}")
        if not lo <= v <= hi:
            raise self.fail(key, f"must be in [{lo}, {hi}], got {v}")
        return v

    def flag(self, key: str) -> bool:
        v = self.cfg.get(key, False)
        if v is not None and not isinstance(v, bool):
            raise self.fail(key, f"must be true or false, got {brief(v)}")
        return bool(v)

    def str(self, key: str) -> str | None:
        v = self.cfg.get(key)
        if v is not None and not isinstance(v, str):
            raise self.fail(key, f"must be a string, got {brief(v)}")
        return v

    def obj(self, key: str) -> dict:
        v = self.cfg.get(key)
        if v is not None and not isinstance(v, dict):
            raise self.fail(key, f"must be an object, got {brief(v)}")
        return v or {}

    def first_int(self, keys: tuple[str, ...], hi: int, what: str) -> int:
        """The first of ``keys`` present (configs name the same number differently)."""
        key = next((k for k in keys if self.cfg.get(k) is not None), None)
        if key is None:
            raise self.fail(keys[0], f"missing ({' / '.join(keys)}): {what}")
        return self.int(key, hi)


def quant_path(config: Path) -> Path:
    """Where a ModelOpt checkpoint keeps its quantisation: `hf_quant_config.json` beside
    `config.json`, `<prefix>_hf_quant_config.json` beside `<prefix>_config.json`."""
    return config.with_name(config.name.removesuffix("config.json") + "hf_quant_config.json")


def _modelopt(algo: Any, kv: Any, exclude: Any, where: str) -> tuple[DTypes, str]:
    """Weight and KV dtypes of a ModelOpt checkpoint, and a note on what was mapped how."""
    if not isinstance(exclude, list) or not all(isinstance(e, str) for e in exclude):
        raise InputError(f"{where}.exclude_modules", "must be a list of module patterns")
    kv_dtype = {None: "bfloat16", "FP8": "fp8"}.get(kv)
    if kv_dtype is None:
        raise InputError(
            f"{where}.kv_cache_quant_algo", f"{brief(kv)} is not supported: null or FP8"
        )
    if algo == "FP8":
        return DTypes("fp8", "fp8", kv_dtype, "bfloat16"), "ModelOpt FP8"
    if algo != "NVFP4":
        raise InputError(
            f"{where}.quant_algo",
            f"{brief(algo)} is not supported: NVFP4 or FP8 (the cost tables' nvfp4 / fp8 kernels)",
        )
    if any(".experts" in e and "shared_experts" not in e for e in exclude):
        raise InputError(
            f"{where}.exclude_modules", "excludes routed experts: mixed NVFP4 is not supported"
        )
    if any("self_attn" in e for e in exclude):
        note = "ModelOpt NVFP4 routed experts; attention excluded from NVFP4: costed as bfloat16"
        return DTypes("bfloat16", "nvfp4", kv_dtype, "bfloat16"), note
    return DTypes("nvfp4", "nvfp4", kv_dtype, "bfloat16"), "ModelOpt NVFP4 weights"


def _kv_scheme(quant: dict) -> str | None:
    """The KV-cache algorithm of a config's ModelOpt block ("FP8" for 8-bit floats)."""
    scheme = quant.get("kv_cache_scheme")
    if isinstance(scheme, dict):
        return "FP8" if (scheme.get("num_bits"), scheme.get("type")) == (8, "float") else "?"
    return scheme


def dtypes(r: Reader, config: Path) -> tuple[DTypes, str]:
    """Weight dtypes from `quantization_config` or the ModelOpt files, and a note for the
    model's `source`."""
    quant = r.obj("quantization_config")
    method = quant.get("quant_method")
    qfile = quant_path(config)
    if qfile.is_file() or method == "modelopt":
        if method not in (None, "modelopt"):
            raise r.fail(
                "quantization_config.quant_method",
                f"{brief(method)} disagrees with {qfile.name} (ModelOpt)",
            )
        if qfile.is_file():
            raw = read_json(qfile, qfile.name)
            block = raw.get("quantization") if isinstance(raw, dict) else None
            if not isinstance(block, dict):
                raise InputError(f"{qfile.name}.quantization", "must be an object")
            return _modelopt(
                block.get("quant_algo"),
                block.get("kv_cache_quant_algo"),
                block.get("exclude_modules", []),
                f"{qfile.name}.quantization",
            )
        where = "quantization_config"
        return _modelopt(quant.get("quant_algo"), _kv_scheme(quant), quant.get("ignore", []), where)
    if method == "fp8":
        weights = "fp8_block" if quant.get("weight_block_size") else "fp8"
        return DTypes(weights, weights, "bfloat16", "bfloat16"), ""
    if method == "mxfp4":
        return DTypes("bfloat16", "w4a16_mxfp4", "bfloat16", "bfloat16"), ""
    if method is None:
        return DTypes("bfloat16", "bfloat16", "bfloat16", "bfloat16"), ""
    raise r.fail(
        "quantization_config.quant_method",
        f"unsupported {brief(method)}: fp8, mxfp4, or ModelOpt (modelopt / hf_quant_config.json)",
    )


def attention(r: Reader, kv_elem: int) -> tuple[AttentionSpec, int, int]:
    """Attention shape, parameters per layer and KV-cache bytes per token per layer (at
    ``kv_elem`` bytes per cached element)."""
    hidden = r.int("hidden_size", MAX_HIDDEN)
    heads = r.int("num_attention_heads", MAX_HEADS)
    if r.cfg.get("kv_lora_rank"):
        q_rank = r.int("q_lora_rank", MAX_FFN, default=0) or None
        kv_rank = r.int("kv_lora_rank", MAX_FFN)
        nope = r.int("qk_nope_head_dim", MAX_HEAD_DIM)
        rope = r.int("qk_rope_head_dim", MAX_HEAD_DIM)
        v_dim = r.int("v_head_dim", MAX_HEAD_DIM)
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
        kv_bytes = (kv_rank + rope) * kv_elem
        extra: dict[str, Any] = {}
        kind = "mla"
        if r.cfg.get("index_topk"):
            kind = "dsa"
            i_heads = r.int("index_n_heads", MAX_HEADS)
            i_dim = r.int("index_head_dim", MAX_HEAD_DIM)
            params += (q_rank or 0) * i_heads * i_dim + hidden * i_dim + 2 * i_dim
            params += hidden * i_heads
            kv_bytes += i_dim + INDEXER_KEY_SCALE_BYTES
            extra = {
                "index_topk": r.int("index_topk", MAX_TOKENS),
                "index_n_heads": i_heads,
                "index_head_dim": i_dim,
            }
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
    kv_heads = r.int("num_key_value_heads", heads)
    head_dim = r.int("head_dim", MAX_HEAD_DIM, default=hidden // heads)
    model_type = r.str("model_type") or ""
    bias = (heads + 2 * kv_heads) * head_dim + hidden if r.flag("attention_bias") else 0
    qk_norm = 2 * head_dim if model_type.startswith("qwen3") else 0
    sinks = heads if model_type == "gpt_oss" else 0
    params = 2 * hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim
    layer_types = r.cfg.get("layer_types") or []
    if not isinstance(layer_types, list) or not all(isinstance(t, str) for t in layer_types):
        raise r.fail("layer_types", "must be a list of layer type names")
    window = r.int("sliding_window", MAX_TOKENS, default=0) if layer_types else 0
    spec = AttentionSpec(
        kind="gqa",
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        sliding_window=window or None,
        sliding_window_layers=[i for i, t in enumerate(layer_types) if t == "sliding_attention"],
    )
    return spec, params + bias + qk_norm + sinks, 2 * kv_heads * head_dim * kv_elem


def moe(r: Reader) -> tuple[MoESpec, int, int, int]:
    """Routed/shared expert shape, one expert's parameters, shared and router parameters."""
    hidden = r.int("hidden_size", MAX_HIDDEN)
    experts = r.first_int(
        ("n_routed_experts", "num_experts", "num_local_experts"), MAX_EXPERTS, "not a MoE config"
    )
    top_k = r.int("num_experts_per_tok", experts)
    gpt_oss = r.str("model_type") == "gpt_oss"
    ffn = r.int("intermediate_size" if gpt_oss else "moe_intermediate_size", MAX_FFN)
    shared = r.int("n_shared_experts", MAX_EXPERTS, lo=0, default=0)
    expert = 3 * hidden * ffn + (2 * ffn + hidden if gpt_oss else 0)
    router = hidden * experts + (experts if gpt_oss or r.str("topk_method") else 0)
    return (
        MoESpec(experts, top_k, ffn, shared, shared * ffn),
        expert,
        shared * 3 * hidden * ffn,
        router,
    )


def _architecture(r: Reader) -> str:
    archs = r.cfg.get("architectures")
    if not isinstance(archs, list) or not archs or not isinstance(archs[0], str):
        raise r.fail("architectures", "must be a non-empty list of class names")
    return archs[0]


def import_hf_config(path: Path, name: str | None = None) -> ModelSpec:
    """Derive a validated `ModelSpec` from a Hugging Face `config.json`."""
    cfg = read_json(path, "config")
    src = path.name
    if not isinstance(cfg, dict):
        raise InputError("config", f"{src} must be a JSON object (a Hugging Face config.json)")
    r = Reader(cfg, src)
    hidden = r.int("hidden_size", MAX_HIDDEN)
    layers = r.int("num_hidden_layers", MAX_LAYERS)
    vocab = r.int("vocab_size", MAX_VOCAB)
    types, note = dtypes(r, path)
    attn, attn_params, kv_bytes = attention(r, KV_DTYPES[types.kv_cache])
    moe_spec, expert, shared, router = moe(r)
    dense_layers = r.int("first_k_dense_replace", layers, lo=0, default=0)
    dense_ffn = r.int("intermediate_size", MAX_FFN) if dense_layers else 0
    params = ParamCounts(
        attention_per_layer=attn_params,
        expert=expert,
        shared_expert_per_layer=shared,
        dense_mlp_per_layer=3 * hidden * dense_ffn,
        router_per_layer=router,
        embedding=vocab * hidden,
        lm_head=0 if r.flag("tie_word_embeddings") else vocab * hidden,
        other_per_layer=2 * hidden,
        final_norm=hidden,
    )
    default_name = src.removesuffix("_config.json").removesuffix(".json").split("--")[-1].lower()
    spec = ModelSpec(
        name=name or default_name,
        source=f"{src} + {quant_path(path).name} ({note})" if note else src,
        architecture=_architecture(r),
        num_layers=layers,
        num_dense_layers=dense_layers,
        num_mtp_layers=r.int("num_nextn_predict_layers", MAX_LAYERS, lo=0, default=0),
        hidden_size=hidden,
        vocab_size=vocab,
        attention=attn,
        moe=moe_spec,
        dense_ffn=dense_ffn,
        dtypes=types,
        params=params,
        bytes_per_param={
            d: BYTES_PER_PARAM[d] for d in sorted({"bfloat16", types.weights, types.moe})
        },
        kv_cache_bytes_per_token_per_layer=kv_bytes,
    )
    return parse_model(asdict(spec))
