"""The framework-neutral part of an export: how a role's replicas sit on hosts, the numbers every
engine derives from a role the same way (decode sequences and prefill tokens per attention-DP
rank, MTP draft tokens), the data a launch script is made of (flags with the plan field they
come from, one command per replica and host), and the refusals every engine shares."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from aicpp_opt.errors import InputError
from aicpp_opt.report.export.inputs import ExportInput
from aicpp_opt.spec.enums import RoleKind
from aicpp_opt.spec.plan import Role

HTTP_PORT = 30000
"""HTTP port of replica slot 0 on its host (SGLang's documented default; vLLM is told it)."""


@dataclass(frozen=True)
class Flag:
    """One command-line argument (or environment variable) and where its value comes from.
    ``value`` None is a switch, a tuple several words; a word holding ``${`` is a shell
    expansion, written in double quotes."""

    name: str
    value: str | tuple[str, ...] | None
    source: str

    @property
    def words(self) -> tuple[str, ...]:
        if self.value is None:
            return ()
        return self.value if isinstance(self.value, tuple) else (self.value,)


@dataclass(frozen=True)
class Command:
    """One process on one host: ``key`` is what the launch script matches (``replica/node``),
    ``env`` its environment, ``program`` the words before the flags."""

    key: str
    label: str
    env: tuple[Flag, ...]
    program: tuple[str, ...]
    flags: tuple[Flag, ...]


@dataclass(frozen=True)
class Layout:
    """The hosts one replica uses: ``nodes`` hosts of ``gpus_per_node`` GPUs each. A replica
    smaller than a host shares it with others: ``slots`` replicas per host, each on its own GPUs
    and ports."""

    nodes: int
    gpus_per_node: int
    slots: int


def layout(gpus: int, attn_tp: int, host_gpus: int) -> Layout:
    """The fewest hosts that hold ``gpus`` evenly (every host the same number of GPUs, at most
    ``host_gpus``) without splitting an attention-TP group unevenly: a host holds whole TP
    groups, or a TP group spans whole hosts."""
    for nodes in range(1, gpus + 1):
        per = gpus // nodes
        if gpus % nodes == 0 and per <= host_gpus and (per % attn_tp == 0 or attn_tp % per == 0):
            return Layout(nodes, per, host_gpus // gpus if nodes == 1 else 1)
    raise AssertionError("one GPU per host always fits")


@dataclass(frozen=True)
class RoleView:
    """A role of the plan with its position (for field names) and host layout."""

    index: int
    role: Role
    layout: Layout

    @property
    def field(self) -> str:
        return f"roles[{self.index}]"

    @property
    def env_name(self) -> str:
        """The role id as a shell variable prefix: ``decode-1`` -> ``DECODE_1``."""
        return re.sub(r"[^A-Za-z0-9]", "_", self.role.id).upper()

    @property
    def serves_decode(self) -> bool:
        return self.role.role != RoleKind.PREFILL

    @property
    def seqs_per_rank(self) -> int:
        """Decode sequences per attention-DP rank, rounded up: ``batch_per_gpu`` is a mean over
        the attention GPUs and one attention-DP rank spans ``attn_tp`` of them."""
        return math.ceil(round(self.role.batch_per_gpu * self.role.shape.attn_tp, 6))

    @property
    def prefill_tokens_per_rank(self) -> int:
        """Uncached prompt tokens one attention-DP rank of a prefill role prefills per forward:
        ``batch`` requests of at most ``chunk_tokens`` each."""
        return self.role.batch * self.role.chunk_tokens

    def host_var(self, group: int) -> str:
        """The variable the operator sets to the address of the first host of host group
        ``group`` (a multi-host replica is one group; replicas sharing a host are one group)."""
        return f"{self.env_name}_{group}_HOST"


def role_views(inp: ExportInput) -> list[RoleView]:
    return [
        RoleView(i, r, layout(r.gpus_per_replica, r.shape.attn_tp, inp.gpus_per_node[r.pool]))
        for i, r in enumerate(inp.plan.roles)
    ]


def draft_tokens(inp: ExportInput, view: RoleView) -> tuple[int, str]:
    """MTP draft tokens a role's engine is configured with, and why. Decode and agg roles use
    their own ``mtp``. A prefill role feeding MTP decode roles carries the same speculative
    method: both engines require prefill and decode to agree on it (SGLang ships the draft
    model's hidden states from prefill; vLLM's NIXL connector checks the method on handshake).
    It takes the largest draft count among them (the count may differ between P and D)."""
    role = view.role
    if role.role != RoleKind.PREFILL:
        return role.mtp, f"{view.field}.mtp = {role.mtp}"
    fed = [(i, r) for i, r in enumerate(inp.plan.roles) if r.role == RoleKind.DECODE and r.mtp]
    if not fed:
        return 0, ""
    i, best = max(fed, key=lambda ir: ir[1].mtp)
    return best.mtp, f"roles[{i}].mtp = {best.mtp} (the decode side's draft method)"


def full_ep(view: RoleView) -> bool:
    """Experts spread over every GPU of the instance (MoE TP 1, EP > 1): what DeepEP needs."""
    s = view.role.shape
    return s.moe_ep > 1 and s.moe_tp == 1


def check_common(inp: ExportInput, view: RoleView, engine: str, overlap_flag: str) -> None:
    """Refusals every engine shares: an attention-FFN split, more than two micro-batches,
    two-batch overlap without DeepEP, MTP on a model without MTP layers."""
    role, where = view.role, view.field
    if role.afd is not None:
        a = role.afd
        raise InputError(
            f"{where}.afd",
            f"{engine} has no attention-FFN split to configure (this role puts attention on "
            f"{a.attention_gpus} GPUs and the experts on {a.ffn_gpus} others); solve with "
            "--mode pd or --mode agg for a plan it can run",
        )
    if role.micro_batches > 2:
        raise InputError(
            f"{where}.micro_batches",
            f"{engine} overlaps at most two micro-batches ({overlap_flag}); "
            f"the plan asks for {role.micro_batches}",
        )
    if role.micro_batches == 2 and not full_ep(view):
        s = role.shape
        raise InputError(
            f"{where}.micro_batches",
            f"{engine}'s {overlap_flag} needs the DeepEP all-to-all, i.e. EP over all "
            f"{role.gpus_per_replica} GPUs of the instance; this role has MoE TP{s.moe_tp} x "
            f"EP{s.moe_ep}: set micro_batches to 1",
        )
    if role.mtp and inp.model.num_mtp_layers == 0:
        raise InputError(
            f"{where}.mtp",
            f"{inp.model.name} has no MTP layers (num_mtp_layers 0 in its model file), so "
            f"{engine} has no draft model for {role.mtp} MTP tokens: set mtp to 0",
        )


def slot_env(view: RoleView, slot: int) -> list[Flag]:
    """``CUDA_VISIBLE_DEVICES`` of a replica that shares its host; none for a host of its own."""
    lay = view.layout
    if lay.slots == 1:
        return []
    first = slot * lay.gpus_per_node
    gpus = ",".join(str(g) for g in range(first, first + lay.gpus_per_node))
    return [
        Flag(
            "CUDA_VISIBLE_DEVICES",
            gpus,
            f"host layout: {lay.slots} replicas of {lay.gpus_per_node} GPUs share a host; "
            f"slot {slot} takes GPUs {gpus}",
        )
    ]


NodeFlags = Callable[[RoleView, int, int, int], list[Flag]]
"""Per-host flags of an engine: (view, host group, slot, node) -> flags."""


@dataclass(frozen=True)
class RoleArgs:
    """What an engine sets for a role on every host: flags, environment, and notes where the
    engine does not do what the plan's model assumed."""

    flags: list[Flag]
    env: list[Flag]
    notes: list[str]


def host_commands(
    view: RoleView,
    program: tuple[str, ...],
    args: RoleArgs,
    node_flags: NodeFlags,
    node_env: NodeFlags | None = None,
) -> list[Command]:
    """One command per replica and host: the role's flags, then the host's own; the role's
    environment, then the host's (the slot's GPUs, then ``node_env``)."""
    lay, out = view.layout, []
    extra = node_env or (lambda *_: [])
    for replica, (group, slot) in enumerate(endpoints(view)):
        for node in range(lay.nodes):
            where = f"replica {replica}, host {node + 1} of {lay.nodes}"
            if lay.slots > 1:
                where = f"replica {replica} (slot {slot} of host group {group})"
            out.append(
                Command(
                    key=f"{replica}/{node}",
                    label=where,
                    env=tuple(args.env + slot_env(view, slot) + extra(view, group, slot, node)),
                    program=program,
                    flags=tuple(args.flags + node_flags(view, group, slot, node)),
                )
            )
    return out


def url(view: RoleView, group: int, slot: int) -> str:
    """HTTP address of a replica: the first host of its group, its slot's port."""
    return f"http://${{{view.host_var(group)}:?}}:{HTTP_PORT + slot}"


def endpoints(view: RoleView) -> list[tuple[int, int]]:
    """(host group, slot) of every replica of a role, in replica order."""
    return [divmod(r, view.layout.slots) for r in range(view.role.replicas)]


@dataclass(frozen=True)
class RoleLaunch:
    """What an engine makes of one role: what every host of every replica gets, and one
    command per replica and host."""

    view: RoleView
    args: RoleArgs
    commands: tuple[Command, ...]


@dataclass(frozen=True)
class Router:
    """The process in front of the replicas (P/D router or proxy, or a load balancer); None
    ``command`` where the engine documents none and the notes say what to do instead."""

    command: Command | None
    notes: tuple[str, ...]


@dataclass(frozen=True)
class Engine:
    """A serving framework: its refusals, its commands per role, its router, and the worker it
    runs under Dynamo (one command for every pod of a role)."""

    key: str
    name: str
    sources: tuple[str, ...]
    launch: Callable[[ExportInput, RoleView], RoleLaunch]
    router: Callable[[ExportInput, list[RoleView]], Router | None]
    dynamo_worker: Callable[[ExportInput, RoleView], Command]
