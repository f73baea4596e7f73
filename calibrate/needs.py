"""What the shipped models need from the measurements: the shapes used to keep only the
relevant series, so `cost_tables/` stays small but covers every TP/EP degree measured."""

from __future__ import annotations

from dataclasses import dataclass

from aicpp_opt.spec.model import ModelSpec, available_models, load_model


@dataclass(frozen=True)
class Needs:
    """Shapes of the models under `models/` plus the system's GPUs per node and GPU name (the
    last word of the tables' `device` column, e.g. "H200" for "NVIDIA H200")."""

    models: tuple[ModelSpec, ...]
    gpus_per_node: int
    gpu: str

    def moe_shapes(self) -> set[tuple[int, int, int, int]]:
        """(hidden, expert ffn, top-k, experts) of every model."""
        return {
            (m.hidden_size, m.moe.expert_ffn, m.moe.top_k, m.moe.num_experts) for m in self.models
        }

    def shared_shapes(self) -> set[tuple[int, int]]:
        """(hidden, shared-expert ffn) of every model with shared experts."""
        return {(m.hidden_size, m.moe.shared_ffn) for m in self.models if m.moe.shared_ffn}

    def attention_dtypes(self, kind: str) -> set[str]:
        """Projection weight dtypes of the models whose attention is `kind` (mla, dsa)."""
        return {m.dtypes.weights for m in self.models if m.attention.kind == kind}

    def gqa_shapes_per_gpu(self) -> set[tuple[int, int, int]]:
        """(heads, kv heads, head_dim) per GPU for every power-of-two TP dividing the heads."""
        shapes = set()
        for m in self.models:
            a = m.attention
            if a.kind != "gqa":
                continue
            tp = 1
            while a.num_heads % tp == 0:
                shapes.add((a.num_heads // tp, max(1, a.num_kv_heads // tp), a.head_dim))
                tp *= 2
        return shapes

    def gqa_windows(self) -> set[int]:
        """0 (full attention) and every sliding window a GQA model uses."""
        windows = {m.attention.sliding_window for m in self.models if m.attention.sliding_window}
        return {0, *windows}


def gpu_name(system: str) -> str:
    """The GPU of a system folder name as the tables' `device` column ends: h200_sxm -> H200."""
    return system.split("_")[0].upper()


def shipped_needs(gpus_per_node: int, system: str) -> Needs:
    return Needs(tuple(load_model(n) for n in available_models()), gpus_per_node, gpu_name(system))
