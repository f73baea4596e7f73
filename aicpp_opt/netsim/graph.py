"""The per-GPU operation graph that a replay runs: compute, point-to-point transfers and
collectives, each with dependencies on earlier operations.

Operations are appended in program order; a compute operation on a GPU runs after every
earlier-appended compute operation on that GPU that is ready before it (the GPU is a serial
resource), while transfers and collectives use the network and overlap with compute.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aicpp_opt.errors import InputError

COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "alltoall")
ALGORITHMS = ("ring", "direct", "halving_doubling")


@dataclass(slots=True)
class Op:
    """One operation. ``gpus`` is (gpu,) for compute, (src, dst) for a transfer and the
    ordered members for a collective. ``nbytes`` of a collective is the full buffer on each
    rank (NCCL's message size): all_gather's output, reduce_scatter's input, alltoall's input."""

    kind: str  # "compute" | "transfer" | "collective"
    gpus: tuple[int, ...]
    deps: tuple[int, ...]
    label: str
    category: str
    seconds: float = 0.0
    nbytes: float = 0.0
    collective: str = ""
    algorithm: str = ""
    micro_batch: int = -1
    layer: int = -1


@dataclass
class Graph:
    """Operations in program order; an op's id is its index."""

    ops: list[Op] = field(default_factory=list)

    def _add(self, op: Op) -> int:
        if op.deps and (min(op.deps) < 0 or max(op.deps) >= len(self.ops)):
            raise ValueError(f"{op.label}: dependency on an op that does not exist yet")
        self.ops.append(op)
        return len(self.ops) - 1

    def compute(
        self,
        gpu: int,
        seconds: float,
        label: str,
        category: str,
        deps=(),
        *,
        micro_batch: int = -1,
        layer: int = -1,
    ) -> int:
        """A kernel (or fused run of kernels) of measured duration on one GPU."""
        if seconds < 0:
            raise InputError(f"replay.{label}", "compute seconds must be >= 0")
        return self._add(
            Op(
                "compute",
                (gpu,),
                tuple(deps),
                label,
                category,
                seconds=seconds,
                micro_batch=micro_batch,
                layer=layer,
            )
        )

    def transfer(
        self,
        src: int,
        dst: int,
        nbytes: float,
        label: str,
        category: str,
        deps=(),
        *,
        micro_batch: int = -1,
        layer: int = -1,
    ) -> int:
        """A point-to-point send of ``nbytes`` from ``src`` to ``dst``."""
        if nbytes < 0:
            raise InputError(f"replay.{label}", "transfer bytes must be >= 0")
        return self._add(
            Op(
                "transfer",
                (src, dst),
                tuple(deps),
                label,
                category,
                nbytes=nbytes,
                micro_batch=micro_batch,
                layer=layer,
            )
        )

    def collective(
        self,
        kind: str,
        members,
        nbytes: float,
        algorithm: str,
        label: str,
        category: str,
        deps=(),
        *,
        micro_batch: int = -1,
        layer: int = -1,
    ) -> int:
        """A collective over ``members`` (ordered; the ring follows this order)."""
        if kind not in COLLECTIVES:
            raise InputError(f"replay.{label}", f"collective {kind!r}; use {COLLECTIVES}")
        if algorithm not in ALGORITHMS:
            raise InputError(f"replay.{label}", f"algorithm {algorithm!r}; use {ALGORITHMS}")
        members = tuple(members)
        if len(set(members)) != len(members) or not members:
            raise InputError(f"replay.{label}", "collective members must be distinct, non-empty")
        if nbytes < 0:
            raise InputError(f"replay.{label}", "collective bytes must be >= 0")
        return self._add(
            Op(
                "collective",
                members,
                tuple(deps),
                label,
                category,
                nbytes=nbytes,
                collective=kind,
                algorithm=algorithm,
                micro_batch=micro_batch,
                layer=layer,
            )
        )

    def gpus(self) -> set[int]:
        return {g for op in self.ops for g in op.gpus}
