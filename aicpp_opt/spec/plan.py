"""Plans: any number of worker roles, each with its pool, GPUs, placement, parallel shape, batch,
the workload it serves and the request rate it is planned for, and the routes from prefill to
decode roles.

Validated against the instance (pools, workloads, GPU budget, NVLink domains) and the model's
expert count so that the evaluator only ever sees plans that can be deployed. Plan files of the
single-role era (``mode`` plus one agg role, or one prefill and one decode role) still read."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from aicpp_opt.errors import InputError
from aicpp_opt.jsonio import read_json
from aicpp_opt.spec.enums import Dispatch, Framework, Mode, RoleKind, values
from aicpp_opt.spec.instance import Instance
from aicpp_opt.spec.limits import (
    MAX_BATCH_PER_GPU,
    MAX_GPUS,
    MAX_MICRO_BATCHES,
    MAX_MTP_DRAFT_TOKENS,
    MAX_RATE,
    MAX_REPLICA_GPUS,
    MAX_ROLES,
    MAX_TOKENS,
)
from aicpp_opt.spec.model import load_model
from aicpp_opt.spec.workload import integer, num, only_keys, req, text

PLAN_MODES = values(Mode)
ROLES = values(RoleKind)
DISPATCH = values(Dispatch)
MIXED = "mixed"
"""The summary mode of a plan whose roles serve in more than one mode."""
UNUSED = {
    RoleKind.PREFILL: ("batch_per_gpu",),
    RoleKind.DECODE: ("batch", "chunk_tokens"),
    RoleKind.AGG: (),
}
"""Fields a role kind has no use for: given anyway, they would be silently ignored."""


@dataclass(frozen=True)
class Shape:
    """Attention TP x DP and MoE TP x EP; for a plain instance both products are its GPUs."""

    attn_tp: int = 1
    attn_dp: int = 1
    moe_tp: int = 1
    moe_ep: int = 1

    @property
    def attention_gpus(self) -> int:
        return self.attn_tp * self.attn_dp

    @property
    def moe_gpus(self) -> int:
        return self.moe_tp * self.moe_ep


@dataclass(frozen=True)
class Placement:
    pool: str
    domain: int
    gpus: int


@dataclass(frozen=True)
class PairGroup:
    """Attention GPUs (indices 0..M-1) that send their tokens to these FFN GPUs (0..N-1)."""

    attention: tuple[int, ...]
    ffn: tuple[int, ...]


@dataclass(frozen=True)
class Afd:
    """Attention-FFN disaggregation of a decode unit: M attention GPUs, N FFN GPUs, the M x N
    pairing and the per-layer dispatch strategy (its K micro-batches are the role's)."""

    attention_gpus: int
    ffn_gpus: int
    ffn_pool: str
    dispatch: Dispatch
    pairing: tuple[PairGroup, ...]
    colocated: bool | None = None
    """Both sides of every unit in one NVLink domain (A<->F over NVLink), or not (over the
    scale-out network); None: read from the placement."""

    @cached_property
    def ffn_sets(self) -> tuple[tuple[int, int], ...]:
        """(attention GPUs feeding it, FFN GPUs in it) for each distinct FFN set of a unit."""
        feeders: dict[tuple[int, ...], int] = {}
        for g in self.pairing:
            key = tuple(sorted(g.ffn))
            feeders[key] = feeders.get(key, 0) + len(g.attention)
        return tuple((m, len(ffn)) for ffn, m in feeders.items())


@dataclass(frozen=True)
class Role:
    """One worker role. ``batch_per_gpu``: mean decode sequences per (attention) GPU (a mean
    over the role's GPUs, so it may be fractional); ``batch`` and
    ``chunk_tokens``: prefill requests per forward and token budget per forward (agg: per
    iteration per attention-DP rank). ``micro_batches``: how many micro-batches a forward is
    split into so one's communication overlaps another's compute (1: no overlap; 2: two-batch
    overlap; an AFD unit's K). ``mtp``: draft tokens per decode step of multi-token prediction
    (0: off). ``id`` names the role in the plan; ``workload`` the workload it serves (empty: the
    instance's first); ``rate`` the requests/s it is planned for (None: the evaluator balances
    the roles of a workload on their capacities)."""

    role: RoleKind
    pool: str
    replicas: int
    placement: tuple[Placement, ...]
    shape: Shape
    batch_per_gpu: float = 0.0
    batch: int = 1
    chunk_tokens: int = 0
    afd: Afd | None = None
    micro_batches: int = 1
    mtp: int = 0
    id: str = ""
    workload: str = ""
    rate: float | None = None

    @property
    def mode(self) -> str:
        """The serving mode this role is part of (prefill roles feed P/D decode roles)."""
        if self.role == RoleKind.AGG:
            return Mode.AFD if self.afd is not None else Mode.AGG
        return Mode.AFD_PD if self.afd is not None else Mode.PD

    @property
    def gpus_per_replica(self) -> int:
        if self.afd is not None:
            return self.afd.attention_gpus + self.afd.ffn_gpus
        return self.shape.attention_gpus

    @property
    def gpus(self) -> int:
        return self.replicas * self.gpus_per_replica


@dataclass(frozen=True)
class Route:
    """Prefill role ``prefill`` sends its requests' KV to decode role ``decode``, at ``rate``
    requests/s (None: in proportion to the decode roles' rates)."""

    prefill: str
    decode: str
    rate: float | None = None


@dataclass(frozen=True)
class Plan:
    """A deployment: its roles, the routes from prefill to decode roles and the one framework
    every role runs (None: the evaluator's default for the model)."""

    roles: tuple[Role, ...]
    framework: Framework | None = None
    routes: tuple[Route, ...] = ()

    @property
    def mode(self) -> str:
        """The serving mode of every non-prefill role, or ``mixed``."""
        modes = {r.mode for r in self.roles if r.role != RoleKind.PREFILL}
        return modes.pop() if len(modes) == 1 else MIXED

    def role(self, role_id: str) -> Role:
        return next(r for r in self.roles if r.id == role_id)

    def serving(self, workload: str, kind: RoleKind) -> list[Role]:
        """The roles of ``kind`` serving ``workload``."""
        return [r for r in self.roles if r.workload == workload and r.role == kind]

    @property
    def workloads(self) -> list[str]:
        return list(dict.fromkeys(r.workload for r in self.roles))


def _shape(data: Any, where: str, num_experts: int | None) -> Shape:
    only_keys(
        data if isinstance(data, dict) else {}, {"attn_tp", "attn_dp", "moe_tp", "moe_ep"}, where
    )
    if not isinstance(data, dict):
        raise InputError(where, "must be an object with attn_tp, attn_dp, moe_tp, moe_ep")
    shape = Shape(
        **{
            k: integer(data.get(k, 1), f"{where}.{k}", hi=MAX_REPLICA_GPUS)
            for k in ("attn_tp", "attn_dp", "moe_tp", "moe_ep")
        }
    )
    if num_experts is not None and num_experts % shape.moe_ep:
        raise InputError(
            f"{where}.moe_ep", f"EP {shape.moe_ep} must divide the model's {num_experts} experts"
        )
    return shape


def _indices(value: Any, field: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise InputError(field, "must be a non-empty list of GPU indices")
    if len(value) > MAX_REPLICA_GPUS:
        raise InputError(field, f"at most {MAX_REPLICA_GPUS} GPU indices, got {len(value)}")
    return tuple(integer(v, f"{field}[{i}]", lo=0) for i, v in enumerate(value))


def _afd(data: Any, where: str, role_pool: str, instance: Instance, shape: Shape) -> Afd:
    only_keys(
        data if isinstance(data, dict) else {},
        {
            "attention_gpus",
            "ffn_gpus",
            "ffn_pool",
            "dispatch",
            "pairing",
            "micro_batches",
            "colocated",
        },
        where,
    )
    m = integer(req(data, "attention_gpus", where), f"{where}.attention_gpus", hi=MAX_REPLICA_GPUS)
    n = integer(req(data, "ffn_gpus", where), f"{where}.ffn_gpus", hi=MAX_REPLICA_GPUS)
    ffn_pool = instance.pool(
        text(data.get("ffn_pool", role_pool), f"{where}.ffn_pool"), f"{where}.ffn_pool"
    ).name
    if shape.attention_gpus != m:
        raise InputError(
            f"{where}.attention_gpus", f"{m} must equal attn_tp x attn_dp = {shape.attention_gpus}"
        )
    if n % shape.moe_gpus:
        raise InputError(
            f"{where}.ffn_gpus",
            f"{n} must be a multiple of moe_tp x moe_ep = {shape.moe_gpus} "
            "(each FFN set holds one copy of the experts)",
        )
    raw = req(data, "pairing", where)
    if not isinstance(raw, list) or not raw:
        raise InputError(
            f"{where}.pairing", "must be a non-empty list of {attention: [...], ffn: [...]}"
        )
    groups = tuple(
        PairGroup(
            _indices(
                req(g, "attention", f"{where}.pairing[{i}]"), f"{where}.pairing[{i}].attention"
            ),
            _indices(req(g, "ffn", f"{where}.pairing[{i}]"), f"{where}.pairing[{i}].ffn"),
        )
        for i, g in enumerate(raw)
    )
    attn = sorted(a for g in groups for a in g.attention)
    if attn != list(range(m)):
        raise InputError(
            f"{where}.pairing", f"attention indices must cover 0..{m - 1} exactly once, got {attn}"
        )
    ffn = sorted({f for g in groups for f in g.ffn})
    if ffn != list(range(n)):
        raise InputError(f"{where}.pairing", f"FFN indices must cover 0..{n - 1}, got {ffn}")
    sets = {frozenset(g.ffn) for g in groups}
    for s in sets:
        if len(s) != shape.moe_gpus or any(s & o for o in sets if o != s):
            raise InputError(
                f"{where}.pairing",
                f"each group's FFN set must hold moe_tp x moe_ep = "
                f"{shape.moe_gpus} GPUs, and sets must be equal or disjoint; got {sorted(s)}",
            )
    return Afd(
        attention_gpus=m,
        ffn_gpus=n,
        ffn_pool=ffn_pool,
        dispatch=Dispatch(text(data.get("dispatch", "all_to_all"), f"{where}.dispatch", DISPATCH)),
        pairing=groups,
        colocated=_colocated(data, where),
    )


def _colocated(data: dict, where: str) -> bool | None:
    value = data.get("colocated")
    if value is not None and not isinstance(value, bool):
        raise InputError(f"{where}.colocated", "must be true or false")
    return value


def _check_colocated(role: Role, instance: Instance, where: str) -> None:
    """A role whose AFD units are colocated keeps whole units in each NVLink domain."""
    a = role.afd
    if a is None or not a.colocated:
        return
    unit = a.attention_gpus + a.ffn_gpus
    pool = instance.pool(role.pool)
    if a.ffn_pool != role.pool or unit > pool.domain_size:
        raise InputError(
            f"{where}.afd.colocated",
            f"a unit of {unit} GPUs across pools or above the {pool.domain_size}-GPU domain "
            "cannot sit in one NVLink domain; set it false",
        )
    if any(p.gpus % unit for p in role.placement):
        raise InputError(
            f"{where}.placement", f"colocated AFD units need whole {unit}-GPU units per domain"
        )


def _placement(data: Any, where: str, instance: Instance) -> tuple[Placement, ...]:
    if not isinstance(data, list) or not data:
        raise InputError(where, 'must be a non-empty list of {"pool", "domain", "gpus"}')
    out = []
    for i, p in enumerate(data):
        f = f"{where}[{i}]"
        pool = instance.pool(text(req(p, "pool", f), f"{f}.pool"), f"{f}.pool")
        domain = integer(req(p, "domain", f), f"{f}.domain", lo=0)
        if domain >= pool.num_domains:
            raise InputError(
                f"{f}.domain", f"pool {pool.name} has domains 0..{pool.num_domains - 1}"
            )
        out.append(
            Placement(pool.name, domain, integer(req(p, "gpus", f), f"{f}.gpus", hi=MAX_GPUS))
        )
    return tuple(out)


def _micro_batches(data: dict, where: str, afd: Afd | None) -> int:
    """The role's micro-batches; plan files written before it was a role field carry an AFD
    unit's K as ``afd.micro_batches``, still read (giving both with different values is an
    error)."""
    legacy = data["afd"].get("micro_batches") if afd is not None else None
    if legacy is not None and "micro_batches" in data and data["micro_batches"] != legacy:
        raise InputError(
            f"{where}.micro_batches", "differs from afd.micro_batches; give it once, on the role"
        )
    field = f"{where}.micro_batches" if legacy is None else f"{where}.afd.micro_batches"
    k = integer(data.get("micro_batches", 1) if legacy is None else legacy, field)
    if k > MAX_MICRO_BATCHES:
        raise InputError(field, f"at most {MAX_MICRO_BATCHES}, got {k}")
    return k


def _mtp(data: dict, where: str, kind: RoleKind) -> int:
    draft = integer(data.get("mtp", 0), f"{where}.mtp", lo=0)
    if draft and kind == RoleKind.PREFILL:
        raise InputError(f"{where}.mtp", "multi-token prediction is a decode knob, not prefill's")
    if draft > MAX_MTP_DRAFT_TOKENS:
        raise InputError(
            f"{where}.mtp", f"at most {MAX_MTP_DRAFT_TOKENS} draft tokens, got {draft}"
        )
    return draft


def _batch_per_gpu(data: dict, where: str, kind: RoleKind, shape: Shape) -> float:
    """Decode sequences per (attention) GPU: a prefill role has none; any other role at least
    one per replica (a mean over the replica's GPUs, so it may be fractional)."""
    field = f"{where}.batch_per_gpu"
    if kind == RoleKind.PREFILL:
        return 0.0
    b = num(data.get("batch_per_gpu", 1), field, strict=True, hi=MAX_BATCH_PER_GPU)
    if b * shape.attention_gpus < 1:
        raise InputError(
            field,
            f"{b:g} x {shape.attention_gpus} attention GPUs is under one sequence per replica; "
            f"use at least {1 / shape.attention_gpus:g}",
        )
    return b


def _role(data: Any, where: str, instance: Instance, num_experts: int | None) -> Role:
    only_keys(
        data if isinstance(data, dict) else {},
        {
            "id",
            "role",
            "pool",
            "replicas",
            "placement",
            "shape",
            "batch_per_gpu",
            "batch",
            "chunk_tokens",
            "afd",
            "micro_batches",
            "mtp",
            "workload",
            "rate",
        },
        where,
    )
    kind = RoleKind(text(req(data, "role", where), f"{where}.role", ROLES))
    for key in UNUSED[kind]:
        if key in data:
            raise InputError(f"{where}.{key}", f"a {kind} role does not use it; drop it")
    workload = instance.workloads[0].name
    if "workload" in data:
        workload = text(data["workload"], f"{where}.workload")
        known = [w.name for w in instance.workloads]
        if workload not in known:
            raise InputError(
                f"{where}.workload", f"{workload!r} is not in the instance; use one of {known}"
            )
    rate = data.get("rate")
    if rate is not None:
        rate = num(rate, f"{where}.rate", hi=MAX_RATE)
    model = instance.model_of(instance.workload(workload))
    if model != instance.model:
        num_experts = load_model(model).moe.num_experts
    pool = instance.pool(text(req(data, "pool", where), f"{where}.pool"), f"{where}.pool").name
    shape = _shape(req(data, "shape", where), f"{where}.shape", num_experts)
    afd = None
    if "afd" in data:
        if kind == RoleKind.PREFILL:
            raise InputError(f"{where}.afd", "a prefill role cannot be attention-FFN disaggregated")
        afd = _afd(data["afd"], f"{where}.afd", pool, instance, shape)
    elif shape.attention_gpus != shape.moe_gpus:
        raise InputError(
            f"{where}.shape",
            f"attn_tp x attn_dp ({shape.attention_gpus}) must equal "
            f"moe_tp x moe_ep ({shape.moe_gpus}) without an afd block",
        )
    role = Role(
        role=kind,
        pool=pool,
        replicas=integer(data.get("replicas", 1), f"{where}.replicas", hi=MAX_GPUS),
        placement=_placement(req(data, "placement", where), f"{where}.placement", instance),
        shape=shape,
        batch_per_gpu=_batch_per_gpu(data, where, kind, shape),
        batch=integer(data.get("batch", 1), f"{where}.batch", hi=MAX_BATCH_PER_GPU),
        chunk_tokens=integer(
            data.get("chunk_tokens", 0 if kind == RoleKind.DECODE else 1),
            f"{where}.chunk_tokens",
            lo=0 if kind == RoleKind.DECODE else 1,
            hi=MAX_TOKENS,
        ),
        afd=afd,
        micro_batches=_micro_batches(data, where, afd),
        mtp=_mtp(data, where, kind),
        id=text(data.get("id", kind.value), f"{where}.id"),
        workload=workload,
        rate=rate,
    )
    if role.gpus_per_replica > MAX_REPLICA_GPUS:
        raise InputError(
            where,
            f"{role.gpus_per_replica} GPUs per replica, above the limit of {MAX_REPLICA_GPUS}",
        )
    _check_colocated(role, instance, where)
    placed = sum(p.gpus for p in role.placement)
    if placed != role.gpus:
        raise InputError(
            f"{where}.placement",
            f"places {placed} GPUs but the role needs {role.gpus} "
            f"({role.replicas} replicas x {role.gpus_per_replica})",
        )
    return role


def _check_budget(roles: tuple[Role, ...], instance: Instance) -> None:
    """GPUs per pool within the pool, GPUs per NVLink domain within the domain."""
    per_pool: dict[str, int] = defaultdict(int)
    per_domain: dict[tuple[str, int], int] = defaultdict(int)
    for role in roles:
        for p in role.placement:
            per_pool[p.pool] += p.gpus
            per_domain[(p.pool, p.domain)] += p.gpus
    for name, used in per_pool.items():
        pool = instance.pool(name)
        if used > pool.gpus:
            raise InputError(
                "roles", f"the plan uses {used} GPUs of pool {name}, which has {pool.gpus}"
            )
    for (name, dom), used in per_domain.items():
        size = instance.pool(name).domain_size
        if used > size:
            raise InputError(
                "roles",
                f"domain {dom} of pool {name} holds {size} GPUs, the plan puts {used} there",
            )


def _routes(data: Any, roles: tuple[Role, ...]) -> tuple[Route, ...]:
    if data is None:
        return ()
    if not isinstance(data, list):
        raise InputError("routes", 'must be a list of {"prefill": id, "decode": id, "rate": r}')
    kind = {r.id: r for r in roles}
    out = []
    for i, raw in enumerate(data):
        where = f"routes[{i}]"
        only_keys(raw if isinstance(raw, dict) else {}, {"prefill", "decode", "rate"}, where)
        ends = {}
        for end, want in (("prefill", RoleKind.PREFILL), ("decode", RoleKind.DECODE)):
            rid = text(req(raw, end, where), f"{where}.{end}")
            if rid not in kind or kind[rid].role != want:
                raise InputError(f"{where}.{end}", f"{rid!r} is not a {want.value} role's id")
            ends[end] = kind[rid]
        if ends["prefill"].workload != ends["decode"].workload:
            raise InputError(where, "a route joins roles of the same workload")
        if any((r.prefill, r.decode) == (ends["prefill"].id, ends["decode"].id) for r in out):
            raise InputError(where, "repeats an earlier route; give each pair of roles once")
        rate = raw.get("rate")
        out.append(
            Route(
                ends["prefill"].id,
                ends["decode"].id,
                None if rate is None else num(rate, f"{where}.rate", hi=MAX_RATE),
            )
        )
    return tuple(out)


def _check_roles(roles: tuple[Role, ...]) -> None:
    """Unique ids; every P/D decode role's workload has a prefill role, and every prefill role
    a decode role to feed."""
    ids = [r.id for r in roles]
    if len(set(ids)) != len(ids):
        raise InputError("roles", f"role ids must be unique, got {ids}")
    for r in roles:
        other = RoleKind.PREFILL if r.role == RoleKind.DECODE else RoleKind.DECODE
        if r.role == RoleKind.AGG or any(
            o.role == other and o.workload == r.workload for o in roles
        ):
            continue
        raise InputError(
            "roles",
            f"{r.role.value} role {r.id!r} of workload {r.workload!r} has no "
            f"{other.value} role to {'feed it' if other == RoleKind.PREFILL else 'feed'}",
        )


def parse_plan(data: Any, instance: Instance, num_experts: int | None = None) -> Plan:
    """Validate a decoded plan against the instance (and the expert count when given)."""
    if not isinstance(data, dict):
        raise InputError("plan", "must be a JSON object")
    only_keys(data, {"mode", "roles", "routes", "name", "description", "framework"}, "plan")
    framework = data.get("framework")
    if framework is not None:
        framework = Framework(text(framework, "framework", values(Framework)))
    raw = req(data, "roles", "plan")
    if not isinstance(raw, list) or not raw or len(raw) > MAX_ROLES:
        raise InputError("roles", f"must be a list of 1 to {MAX_ROLES} roles")
    roles = tuple(_role(r, f"roles[{i}]", instance, num_experts) for i, r in enumerate(raw))
    _check_roles(roles)
    plan = Plan(roles, framework, _routes(data.get("routes"), roles))
    if "mode" in data:
        mode = text(data["mode"], "mode", (*PLAN_MODES, MIXED))
        if mode != plan.mode:
            raise InputError(
                "mode", f"the plan says {mode!r} but its roles serve {str(plan.mode)!r}"
            )
    _check_budget(roles, instance)
    return plan


def plan_record(data: Any) -> tuple[Any, Any]:
    """A plan file's plan object and the instance it records: ``solve --json`` output holds
    the plan under ``plan`` beside ``instance``; a plain plan file records none."""
    if isinstance(data, dict) and isinstance(data.get("plan"), dict):
        return data["plan"], data.get("instance")
    return data, None


def load_plan(path: str | Path, instance: Instance, num_experts: int | None = None) -> Plan:
    """A plan file, or the plan in ``solve --json`` output."""
    return parse_plan(plan_record(read_json(path, "plan"))[0], instance, num_experts)


def _role_dict(role: Role) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": role.id or role.role.value,
        "role": role.role.value,
        "workload": role.workload,
        "pool": role.pool,
        "replicas": role.replicas,
        "placement": [{"pool": p.pool, "domain": p.domain, "gpus": p.gpus} for p in role.placement],
        "shape": {
            "attn_tp": role.shape.attn_tp,
            "attn_dp": role.shape.attn_dp,
            "moe_tp": role.shape.moe_tp,
            "moe_ep": role.shape.moe_ep,
        },
    }
    if role.role != RoleKind.PREFILL:
        out["batch_per_gpu"] = round(role.batch_per_gpu, 6)
        out["mtp"] = role.mtp
    if role.role != RoleKind.DECODE:
        out["batch"] = role.batch
        out["chunk_tokens"] = role.chunk_tokens
    out["micro_batches"] = role.micro_batches
    if role.rate is not None:
        out["rate"] = round(role.rate, 9)
    if role.afd is not None:
        a = role.afd
        out["afd"] = {
            "attention_gpus": a.attention_gpus,
            "ffn_gpus": a.ffn_gpus,
            "ffn_pool": a.ffn_pool,
            "dispatch": a.dispatch.value,
            "pairing": [{"attention": list(g.attention), "ffn": list(g.ffn)} for g in a.pairing],
        }
        if a.colocated is not None:
            out["afd"]["colocated"] = a.colocated
    return out


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    """The JSON form that ``parse_plan`` reads back."""
    out: dict[str, Any] = {"mode": plan.mode}
    if plan.framework is not None:
        out["framework"] = plan.framework.value
    out["roles"] = [_role_dict(r) for r in plan.roles]
    if plan.routes:
        out["routes"] = [
            {"prefill": r.prefill, "decode": r.decode}
            | ({} if r.rate is None else {"rate": round(r.rate, 9)})
            for r in plan.routes
        ]
    return out
