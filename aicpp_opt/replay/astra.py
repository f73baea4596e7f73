"""Run a user-supplied AstraSim analytical binary on the replay's Chakra traces.

Writes, in a trace directory (made absolute: AstraSim runs inside it), ``decode.<rank>.et``
(see ``chakra``), ``network.yml``, ``system.json``, ``memory.json`` and ``comm_group.json``;
runs the binary (path made absolute) with a time limit in its own process group (killed
whole on timeout); parses AstraSim's ``sys[<rank>] finished, <cycles> cycles`` lines (one
cycle = 1 ns). Every rank with work must report one: AstraSim exits 0 when its event queue
runs dry, also when ranks are stuck on dependencies that never clear. Any failure raises
``AstraSimError`` and leaves the built-in result untouched.

Conventions checked against AstraSim commit c459ab6 (Chakra feeder v2), both analytical
backends; each is written so that AstraSim and the built-in replay model the same thing:

- **Network.** One pool's dimensions. Size-1 dimensions are dropped (AstraSim refuses a
  dimension of one NPU); a GPU's id is the same with or without them. Bandwidth is written
  in AstraSim's unit: its "GB/s" is 2^30 B/s (``bw_GBps_to_Bpns``), not the instance's 1e9.
  A plan over several pools is written when its decode step lies in one pool, as that
  pool's topology with its GPUs renumbered from 0; otherwise it is refused.
- **Collectives.** ``comm_size`` per kind as AstraSim reads it (``chakra.comm_size``).
  AstraSim takes one implementation per collective kind and dimension for the whole run,
  and uses it only for collectives over every NPU; it runs a collective over a subgroup as
  a ring. The replay's algorithm is written where AstraSim can express it (the most common
  one per kind over full-topology collectives; the replay's pairwise ``ring`` all-to-all is
  AstraSim's ``direct1``, one peer at a time, as AstraSim's own ``ring`` all-to-all relays
  blocks around the ring); every other case is stated in ``AstraInputs.notes``.
- **System.** ``endpoint-delay`` 1 ns: AstraSim adds it at both ends of every step of a
  full-topology collective (an 8-GPU ring all-reduce gains 10 ns); 0 aborts AstraSim on
  such collectives (its event queue asserts that a new event lies in the future).
  ``local-mem-bw`` sets the reduction cost AstraSim adds after every reduce step,
  3 x bytes / local-mem-bw, fully exposed (at the GPU's HBM bandwidth, 4800 GB/s, an
  8-GPU all-reduce of 64 MiB takes 15% longer). NCCL reduces each slice while the next
  one streams in (the measured NCCL times hold no separate reduction phase) and the
  built-in replay has none, so it is set to ``LOCAL_MEM_BW_GBPS``, where the cost floors
  to 0 ns.

What stays different (measured by ``benchmarks/astra_vs_builtin.py``): AstraSim keeps one
send or collective in flight per rank (``HardwareResource``: a GPU's sends go one after
another; the built-in replay shares the GPU's port among them: the same bytes, one path
latency per send more in AstraSim, which tells on an EP exchange of small messages to many
peers; ``one_comm_at_a_time`` gives the built-in simulator AstraSim's rule); the
congestion-unaware backend never shares a link (several senders into one
GPU each get full bandwidth); a message between GPUs that differ in several dimensions
crosses only the first of them in AstraSim (stated in the notes); the congestion-aware
backend stores and forwards each message whole at every switch (twice the serialization
time of a message crossing a switch) and takes one-dimension topologies only.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from aicpp_opt.errors import InputError
from aicpp_opt.netsim.fabric import Fabric
from aicpp_opt.netsim.graph import Graph
from aicpp_opt.netsim.topology import Dim, Topology
from aicpp_opt.replay.chakra import comm_groups, write_traces

ENV_VAR = "AICPP_ASTRA_SIM"
DEFAULT_TIMEOUT_S = 300.0
ASTRA_GB = 2**30  # bytes in AstraSim's "GB" of its bandwidth unit
ENDPOINT_DELAY_NS = 1
LOCAL_MEM_BW_GBPS = 1e12  # each pass of bytes / local-mem-bw floors to 0 ns below 1 TB
_TOPO_NAMES = {"switch": "Switch", "ring": "Ring", "fully_connected": "FullyConnected"}
_KIND_NAMES = {
    "all_reduce": "all-reduce",
    "all_gather": "all-gather",
    "reduce_scatter": "reduce-scatter",
    "alltoall": "all-to-all",
}
_IMPL_NAMES = {"ring": "ring", "direct": "direct", "halving_doubling": "halvingDoubling"}
_FINISHED = re.compile(r"sys\[(\d+)\],?\s*(?:finished,|Wall time:)\s*(\d+)")


class AstraSimError(InputError):
    """AstraSim could not be run or its output could not be read."""

    def __init__(self, message: str):
        super().__init__("--astra-sim", message)


@dataclass(frozen=True)
class AstraInputs:
    """Written AstraSim inputs: the files, the replay's GPU id of rank 0 (``offset``), the
    ranks that have work, and what AstraSim will run differently from the replay."""

    files: dict[str, Path]
    offset: int
    ranks: frozenset[int]
    notes: tuple[str, ...]

    @property
    def trace_dir(self) -> Path:
        return self.files["network"].parent


@dataclass(frozen=True)
class AstraResult:
    """Finish time (s) per replay GPU id reported by AstraSim, the binary, its inputs."""

    finish_s: dict[int, float]
    binary: Path
    inputs: AstraInputs

    @property
    def makespan_s(self) -> float:
        return max(self.finish_s.values())

    @property
    def trace_dir(self) -> Path:
        return self.inputs.trace_dir

    @property
    def notes(self) -> tuple[str, ...]:
        return self.inputs.notes


def resolve_binary(path: str | None) -> Path | None:
    """The AstraSim binary (absolute) from ``--astra-sim`` or ``AICPP_ASTRA_SIM``; None if
    neither is set."""
    raw = path or os.environ.get(ENV_VAR)
    if not raw:
        return None
    binary = Path(raw).expanduser().absolute()
    if not binary.is_file():
        raise AstraSimError(f"{binary} does not exist; pass the AstraSim analytical binary")
    if not os.access(binary, os.X_OK):
        raise AstraSimError(f"{binary} is not executable; chmod +x it or pass another path")
    return binary


def write_inputs(graph: Graph, network: Topology | Fabric, out_dir: Path) -> AstraInputs:
    """Write the traces and the four AstraSim configuration files (see the module notes)."""
    topo, offset, notes = _one_pool(graph, network)
    local = _renumbered(graph, offset)
    dims = [d for d in topo.dims if d.size > 1]
    if not dims:
        raise AstraSimError("the topology holds one GPU; AstraSim needs at least two")
    out_dir = out_dir.absolute()
    out_dir.mkdir(parents=True, exist_ok=True)
    write_traces(local, topo.num_gpus, out_dir / "decode")
    files = {
        "workload": out_dir / "decode",
        "network": out_dir / "network.yml",
        "system": out_dir / "system.json",
        "memory": out_dir / "memory.json",
        "comm_group": out_dir / "comm_group.json",
    }
    files["network"].write_text(
        "# AstraSim analytical network: bandwidth in AstraSim's GB/s (2^30 B/s) per link, "
        "latency ns per link; size-1 dimensions left out\n"
        f"topology: [ {', '.join(_TOPO_NAMES[d.kind] for d in dims)} ]\n"
        f"npus_count: [ {', '.join(str(d.size) for d in dims)} ]\n"
        f"bandwidth: [ {', '.join(repr(_link_bw(d) / ASTRA_GB) for d in dims)} ]\n"
        f"latency: [ {', '.join(f'{d.latency * 1e9:g}' for d in dims)} ]\n"
    )
    impls, algo_notes = _implementations(local, topo.num_gpus, len(dims))
    algo_notes += _routing_notes(local, dims)
    system = {
        "scheduling-policy": "FIFO",
        "endpoint-delay": ENDPOINT_DELAY_NS,
        "active-chunks-per-dimension": 1,
        "preferred-dataset-splits": 1,
        "collective-optimization": "baseline",
        "local-mem-bw": LOCAL_MEM_BW_GBPS,
        "boost-mode": 0,
    }
    for kind, name in _KIND_NAMES.items():
        system[f"{name}-implementation"] = [impls[kind]] * len(dims)
    files["system"].write_text(json.dumps(system, indent=2))
    files["memory"].write_text(json.dumps({"memory-type": "NO_MEMORY_EXPANSION"}))
    groups = {str(i): list(m) for m, i in comm_groups(local).items()}
    files["comm_group"].write_text(json.dumps(groups))
    ranks = frozenset(local.gpus())
    return AstraInputs(files, offset, ranks, (*notes, *algo_notes))


def _one_pool(graph: Graph, network: Topology | Fabric) -> tuple[Topology, int, list[str]]:
    """The topology AstraSim gets, the replay id of its rank 0, and a note when a pool of a
    multi-pool fabric is written alone."""
    if isinstance(network, Topology):
        return network, 0, []
    pools = network.pools_holding(sorted(graph.gpus())) or [0]
    if len(pools) > 1:
        raise AstraSimError(
            f"the decode step runs on GPUs of pools {' and '.join(str(p + 1) for p in pools)} "
            "(instance order); AstraSim's network file describes one pool's topology, so "
            "only a decode step inside one pool can be written"
        )
    pool = pools[0]
    offset = int(network.offsets[pool])
    note = (
        f"multi-pool plan: the decode step lies in pool {pool + 1} of {len(network.pools)}; "
        f"AstraSim gets that pool alone (its rank 0 is replay GPU {offset})"
    )
    return network.pools[pool], offset, [note]


def _renumbered(graph: Graph, offset: int) -> Graph:
    if not offset:
        return graph
    return Graph([replace(op, gpus=tuple(g - offset for g in op.gpus)) for op in graph.ops])


def _link_bw(d: Dim) -> float:
    return d.bw / (d.size - 1) if d.kind == "fully_connected" and d.size > 1 else d.bw


def _impl_name(kind: str, algorithm: str) -> str:
    """AstraSim's implementation for the replay's algorithm (its pairwise ring all-to-all
    is AstraSim's direct exchange with a window of one peer)."""
    if kind == "alltoall" and algorithm == "ring":
        return "direct1"
    return _IMPL_NAMES[algorithm]


def _implementations(
    graph: Graph, num_gpus: int, num_dims: int
) -> tuple[dict[str, str], list[str]]:
    """AstraSim's implementation per collective kind, and notes on every collective that
    AstraSim runs otherwise than the replay (see the module notes)."""
    full: dict[str, Counter] = {k: Counter() for k in _KIND_NAMES}
    sub: Counter = Counter()
    for op in graph.ops:
        if op.kind != "collective":
            continue
        if len(op.gpus) == num_gpus:
            full[op.collective][op.algorithm] += 1
        else:
            sub[op.collective, op.algorithm] += 1
    impls, notes = {}, []
    for kind, counts in full.items():
        chosen = counts.most_common(1)[0][0] if counts else "ring"
        impls[kind] = _impl_name(kind, chosen)
        for algo, n in counts.items():
            if algo != chosen:
                notes.append(
                    f"{n} {kind} over all {num_gpus} GPUs chose {algo}: AstraSim takes one "
                    f"implementation per kind for the run, they run {chosen}"
                )
        if counts and num_dims > 1:
            notes.append(
                f"{counts.total()} {kind} over all {num_gpus} GPUs: AstraSim runs them "
                f"dimension by dimension, the replay as one {chosen} over the members"
            )
    for (kind, algo), n in sub.items():
        if kind == "alltoall":
            notes.append(
                f"{n} alltoall over a subgroup: AstraSim relays blocks around a ring "
                f"(n(n-1)/2 steps of size/n), the replay's {algo} exchange sends each "
                "block straight to its peer"
            )
        elif algo != "ring":
            notes.append(
                f"{n} {kind} over a subgroup chose {algo}: AstraSim runs every subgroup "
                "collective as a ring"
            )
    return impls, notes


def _routing_notes(graph: Graph, dims: list[Dim]) -> list[str]:
    """A note when transfers join GPUs that differ in several dimensions: AstraSim sends a
    message over the first dimension in which its ends differ (``MultiDimTopology::send``),
    the replay routes it through every dimension on the way."""
    sizes = np.array([d.size for d in dims])
    strides = np.concatenate([[1], np.cumprod(sizes)[:-1]])
    ends = np.array([op.gpus for op in graph.ops if op.kind == "transfer"], dtype=np.int64)
    if len(dims) < 2 or not len(ends):
        return []
    differ = (ends[:, :1] // strides % sizes != ends[:, 1:] // strides % sizes).sum(axis=1)
    crossing = int((differ > 1).sum())
    if not crossing:
        return []
    return [
        f"{crossing} of {len(ends)} transfers join GPUs that differ in several dimensions: "
        "AstraSim sends each over the first dimension they differ in only (at its bandwidth "
        "and latency), the replay through every dimension (the slowest one binds)"
    ]


def one_comm_at_a_time(graph: Graph) -> Graph:
    """The graph with each GPU's sends and collectives one after another in program order,
    each waiting for the previous one's delivery: AstraSim's ``HardwareResource`` keeps one
    communication node in flight per rank (receives aside) and releases a send when it
    arrives. The built-in simulator on this graph runs what AstraSim runs; on the plain graph
    it lets a GPU's sends share its port, as NCCL and DeepEP do."""
    last: dict[int, int] = {}
    ops = []
    for i, op in enumerate(graph.ops):
        if op.kind != "compute":
            ranks = op.gpus[:1] if op.kind == "transfer" else op.gpus
            before = dict.fromkeys(last[r] for r in ranks if r in last)
            op = replace(op, deps=tuple(dict.fromkeys((*op.deps, *before))))
            last.update(dict.fromkeys(ranks, i))
        ops.append(op)
    return Graph(ops)


def run(binary: Path, inputs: AstraInputs, timeout_s: float = DEFAULT_TIMEOUT_S) -> AstraResult:
    """Run AstraSim on written inputs; AstraSimError on failure, timeout, unreadable output
    or a rank with work that never finished."""
    files = inputs.files
    cmd = [
        str(binary),
        f"--workload-configuration={files['workload']}",
        f"--system-configuration={files['system']}",
        f"--network-configuration={files['network']}",
        f"--remote-memory-configuration={files['memory']}",
        f"--comm-group-configuration={files['comm_group']}",
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        cwd=inputs.trace_dir,
    )
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AstraSimError(f"{binary} did not finish within {timeout_s:g} s; killed") from None
    if proc.returncode != 0:
        tail = out.strip().splitlines()[-1:] or ["no output"]
        raise AstraSimError(f"{binary} exited with {proc.returncode}: {tail[0][:200]}")
    finish = parse_finish(out)
    stuck = sorted(inputs.ranks - finish.keys())
    if stuck:
        raise AstraSimError(
            f"{len(stuck)} of {len(inputs.ranks)} ranks with work never finished "
            f"(first: rank {stuck[0]}; a dependency that never clears in the traces in "
            f"{inputs.trace_dir}); no step time"
        )
    return AstraResult({r + inputs.offset: t for r, t in finish.items()}, binary, inputs)


def parse_finish(output: str) -> dict[int, float]:
    """Per-rank finish times (s) from AstraSim's log; AstraSimError when there are none."""
    finish = {int(r): int(c) * 1e-9 for r, c in _FINISHED.findall(output)}
    if not finish:
        raise AstraSimError("output has no 'sys[<rank>] finished, <cycles> cycles' lines")
    return finish
