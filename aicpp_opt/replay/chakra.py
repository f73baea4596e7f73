"""Chakra execution traces (one per rank, ``<prefix>.<rank>.et``) for AstraSim.

The schema is written here from the public Chakra ET format (package ``ChakraProtoMsg``):
``GlobalMetadata {version, attr}``, ``Node {id, name, type, ctrl_deps, data_deps,
start_time_micros, duration_micros, attr}`` and ``AttributeProto {name, oneof value}``.
The descriptor is built in code from a ``FileDescriptorProto``, so nothing generated is
committed and protoc is not needed. A trace file is a stream of length-delimited records
(varint length, then the message): the global metadata first, then the nodes.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from aicpp_opt.netsim.graph import Graph, Op

ET_VERSION = "0.0.4"
NODE_TYPES = [
    "INVALID_NODE",
    "METADATA_NODE",
    "MEM_LOAD_NODE",
    "MEM_STORE_NODE",
    "COMP_NODE",
    "COMM_SEND_NODE",
    "COMM_RECV_NODE",
    "COMM_COLL_NODE",
]
COMM_TYPES = [
    "ALL_REDUCE",
    "REDUCE",
    "ALL_GATHER",
    "GATHER",
    "SCATTER",
    "BROADCAST",
    "ALL_TO_ALL",
    "REDUCE_SCATTER",
    "REDUCE_SCATTER_BLOCK",
    "BARRIER",
]
COMM_TYPE_OF = {"all_reduce": 0, "all_gather": 2, "alltoall": 6, "reduce_scatter": 7}
_F = descriptor_pb2.FieldDescriptorProto

# AttributeProto: name, doc_string, then the scalar members of its ``value`` oneof we use.
_ATTR_FIELDS = [
    ("name", 1, _F.TYPE_STRING),
    ("doc_string", 2, _F.TYPE_STRING),
    ("double_val", 3, _F.TYPE_DOUBLE),
    ("float_val", 5, _F.TYPE_FLOAT),
    ("int32_val", 7, _F.TYPE_INT32),
    ("int64_val", 9, _F.TYPE_INT64),
    ("uint32_val", 11, _F.TYPE_UINT32),
    ("uint64_val", 13, _F.TYPE_UINT64),
    ("bool_val", 27, _F.TYPE_BOOL),
    ("string_val", 29, _F.TYPE_STRING),
]
# Node: (name, number, type, label, type_name for enums and messages).
_NODE_FIELDS = [
    ("id", 1, _F.TYPE_UINT64, _F.LABEL_OPTIONAL, ""),
    ("name", 2, _F.TYPE_STRING, _F.LABEL_OPTIONAL, ""),
    ("type", 3, _F.TYPE_ENUM, _F.LABEL_OPTIONAL, ".ChakraProtoMsg.NodeType"),
    ("ctrl_deps", 4, _F.TYPE_UINT64, _F.LABEL_REPEATED, ""),
    ("data_deps", 5, _F.TYPE_UINT64, _F.LABEL_REPEATED, ""),
    ("start_time_micros", 6, _F.TYPE_UINT64, _F.LABEL_OPTIONAL, ""),
    ("duration_micros", 7, _F.TYPE_UINT64, _F.LABEL_OPTIONAL, ""),
    ("attr", 10, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, ".ChakraProtoMsg.AttributeProto"),
]


@cache
def messages() -> dict[str, type]:
    """Message classes GlobalMetadata, Node and AttributeProto, built from the schema."""
    fd = descriptor_pb2.FileDescriptorProto(
        name="aicpp_chakra_et_def.proto", package="ChakraProtoMsg", syntax="proto3"
    )
    for enum_name, values in (("NodeType", NODE_TYPES), ("CollectiveCommType", COMM_TYPES)):
        enum = fd.enum_type.add(name=enum_name)
        for i, v in enumerate(values):
            enum.value.add(name=v, number=i)
    attr = fd.message_type.add(name="AttributeProto")
    attr.oneof_decl.add(name="value")
    for name, num, typ in _ATTR_FIELDS:
        f = attr.field.add(name=name, number=num, type=typ, label=_F.LABEL_OPTIONAL)
        if num > 2:
            f.oneof_index = 0
    meta = fd.message_type.add(name="GlobalMetadata")
    meta.field.add(name="version", number=1, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    meta.field.add(
        name="attr",
        number=2,
        type=_F.TYPE_MESSAGE,
        label=_F.LABEL_REPEATED,
        type_name=".ChakraProtoMsg.AttributeProto",
    )
    node = fd.message_type.add(name="Node")
    for name, num, typ, label, type_name in _NODE_FIELDS:
        f = node.field.add(name=name, number=num, type=typ, label=label)
        if type_name:
            f.type_name = type_name
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    return {
        n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"ChakraProtoMsg.{n}"))
        for n in ("GlobalMetadata", "Node", "AttributeProto")
    }


def _attr(name: str, **value) -> object:
    return messages()["AttributeProto"](name=name, **value)


def comm_size(op: Op) -> int:
    """The bytes AstraSim expects in a collective's ``comm_size`` (``op.nbytes`` is NCCL's
    message size, the full buffer on each rank).

    AstraSim (``Ring``, ``AllToAll`` and ``HalvingDoubling`` in ``astra-sim/system``) reads
    all-reduce: the buffer each rank reduces; reduce-scatter: each rank's whole input (it
    keeps 1/n); all-to-all: each rank's whole send buffer (1/n to each peer); all-gather:
    each rank's *input*, one n-th of the output, which it multiplies by n. So every kind
    is written as the full buffer except all-gather, written as ``nbytes / n``.
    """
    size = op.nbytes / len(op.gpus) if op.collective == "all_gather" else op.nbytes
    return round(size)


def rank_nodes(graph: Graph, rank: int, groups: dict[tuple[int, ...], int]) -> list:
    """The Chakra nodes of one rank, in program order.

    Compute becomes COMP_NODE. Its duration is in whole microseconds (Chakra's unit): the
    rounding remainder carries to the rank's next compute node, so the rank's running total
    of compute stays within half a microsecond of the exact one (rounding each node alone
    drifts by up to 0.5 us per node, all in one direction when a layer's nodes repeat). A
    transfer is a COMM_SEND_NODE on its source and a COMM_RECV_NODE on its destination
    (tag = op id); a collective is a COMM_COLL_NODE on each member with its comm type,
    ``comm_size`` (see ``comm_size``) and group (``pg_name``, defined in the comm-group
    JSON). Dependencies on ops this rank does not take part in are carried by the receive
    that follows them; each dependency is listed once (Chakra's feeder clears one copy of a
    parent per completion, so a repeated one never clears and the rank deadlocks). Compute
    nodes are chained with ctrl deps so the GPU runs them one at a time.
    """
    node_cls = messages()["Node"]
    present: set[int] = set()
    out = []
    prev_comp: int | None = None
    carry_us = 0.0
    for i, op in enumerate(graph.ops):
        if rank not in op.gpus:
            continue
        deps = dict.fromkeys(d for d in op.deps if d in present)
        n = node_cls(id=i, name=op.label, data_deps=list(deps))
        n.attr.append(_attr("is_cpu_op", bool_val=False))
        if op.kind == "compute":
            n.type = NODE_TYPES.index("COMP_NODE")
            if op.seconds > 0:
                exact_us = op.seconds * 1e6 + carry_us
                n.duration_micros = round(exact_us)
                carry_us = exact_us - n.duration_micros
            if prev_comp is not None:
                n.ctrl_deps.append(prev_comp)
            prev_comp = i
        elif op.kind == "transfer":
            send = op.gpus[0] == rank
            n.type = NODE_TYPES.index("COMM_SEND_NODE" if send else "COMM_RECV_NODE")
            n.attr.extend(
                [
                    _attr("comm_src", int32_val=op.gpus[0]),
                    _attr("comm_dst", int32_val=op.gpus[1]),
                    _attr("comm_tag", int32_val=i),
                    _attr("comm_size", int64_val=round(op.nbytes)),
                ]
            )
        else:
            n.type = NODE_TYPES.index("COMM_COLL_NODE")
            n.attr.extend(
                [
                    _attr("comm_type", int64_val=COMM_TYPE_OF[op.collective]),
                    _attr("comm_size", int64_val=comm_size(op)),
                    _attr("pg_name", string_val=str(groups[op.gpus])),
                ]
            )
        present.add(i)
        out.append(n)
    return out


def comm_groups(graph: Graph) -> dict[tuple[int, ...], int]:
    """A group id (from 1) for each distinct collective member list."""
    groups: dict[tuple[int, ...], int] = {}
    for op in graph.ops:
        if op.kind == "collective" and op.gpus not in groups:
            groups[op.gpus] = len(groups) + 1
    return groups


def write_traces(graph: Graph, num_ranks: int, prefix: Path) -> list[Path]:
    """Write ``<prefix>.<rank>.et`` for every rank; returns the paths."""
    meta = messages()["GlobalMetadata"](version=ET_VERSION)
    groups = comm_groups(graph)
    paths = []
    for rank in range(num_ranks):
        path = prefix.parent / f"{prefix.name}.{rank}.et"
        with path.open("wb") as fh:
            for msg in (meta, *rank_nodes(graph, rank, groups)):
                data = msg.SerializeToString()
                fh.write(_varint(len(data)) + data)
        paths.append(path)
    return paths


def read_trace(path: Path) -> tuple[object, list]:
    """Decode one trace file: (GlobalMetadata, [Node, ...])."""
    data = path.read_bytes()
    pos, records = 0, []
    while pos < len(data):
        size, pos = _read_varint(data, pos)
        records.append(data[pos : pos + size])
        pos += size
    msgs = messages()
    meta = msgs["GlobalMetadata"].FromString(records[0])
    return meta, [msgs["Node"].FromString(r) for r in records[1:]]


def _varint(value: int) -> bytes:
    """Protobuf base-128 varint encoding of a non-negative integer."""
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """Decode a varint at ``pos``; returns (value, position after it)."""
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos
