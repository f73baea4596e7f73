"""The categorical words of plans and instances, as enums: serving modes, worker roles, AFD
dispatch strategies and serving frameworks. They are ``StrEnum``s, so JSON files and CLI options
read and write their plain values."""

from __future__ import annotations

from enum import StrEnum
from functools import cache


class Mode(StrEnum):
    """How a deployment serves: aggregated (chunked prefill), prefill/decode disaggregated, AFD
    units that prefill in chunks themselves, AFD decode units fed by P/D prefill."""

    AGG = "agg"
    PD = "pd"
    AFD = "afd"
    AFD_PD = "afd+pd"


class RoleKind(StrEnum):
    """What a worker role does: aggregated (prefill in chunks + decode), prefill, decode."""

    AGG = "agg"
    PREFILL = "prefill"
    DECODE = "decode"


class Dispatch(StrEnum):
    """How an AFD unit moves a micro-batch's tokens between its attention and FFN GPUs."""

    ALL_TO_ALL = "all_to_all"
    DIRECT = "direct"
    ALLGATHER_REDUCESCATTER = "allgather_reducescatter"


class Framework(StrEnum):
    """The serving engine a deployment runs; every op is priced from its tables."""

    SGLANG = "sglang"
    VLLM = "vllm"
    TRTLLM = "trtllm"


@cache
def values(enum: type[StrEnum]) -> tuple[str, ...]:
    """The plain values of an enum, in declaration order (for messages and choices; the op
    model asks for the frameworks' on every table lookup)."""
    return tuple(m.value for m in enum)
