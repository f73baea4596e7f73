"""Run a user-supplied AstraSim analytical binary on the replay's Chakra traces.

Writes, in a trace directory: ``decode.<rank>.et`` (see ``chakra``), ``network.yml``,
``system.json``, ``memory.json`` and ``comm_group.json``; runs the binary with a time limit
in its own process group (killed whole on timeout); parses AstraSim's
``sys[<rank>] finished, <cycles> cycles`` lines (one cycle = 1 ns). Any failure raises
``AstraSimError`` and leaves the built-in result untouched.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from aicpp_opt.errors import InputError
from aicpp_opt.netsim.graph import Graph
from aicpp_opt.netsim.topology import Topology
from aicpp_opt.replay.chakra import comm_groups, write_traces

ENV_VAR = "AICPP_ASTRA_SIM"
DEFAULT_TIMEOUT_S = 300.0
_TOPO_NAMES = {"switch": "Switch", "ring": "Ring", "fully_connected": "FullyConnected"}
_ALGO_NAMES = {"ring": "ring", "direct": "direct", "halving_doubling": "halvingDoubling"}
_FINISHED = re.compile(r"sys\[(\d+)\],?\s*(?:finished,|Wall time:)\s*(\d+)")


class AstraSimError(InputError):
    """AstraSim could not be run or its output could not be read."""

    def __init__(self, message: str):
        super().__init__("--astra-sim", message)


@dataclass(frozen=True)
class AstraResult:
    """Per-rank finish times (s) reported by AstraSim, and where its inputs were written."""

    finish_s: dict[int, float]
    trace_dir: Path

    @property
    def makespan_s(self) -> float:
        return max(self.finish_s.values())


def resolve_binary(path: str | None) -> Path | None:
    """The AstraSim binary from ``--astra-sim`` or ``AICPP_ASTRA_SIM``; None if neither is set."""
    raw = path or os.environ.get(ENV_VAR)
    if not raw:
        return None
    binary = Path(raw).expanduser()
    if not binary.is_file():
        raise AstraSimError(f"{binary} does not exist; pass the AstraSim analytical binary")
    if not os.access(binary, os.X_OK):
        raise AstraSimError(f"{binary} is not executable; chmod +x it or pass another path")
    return binary


def write_inputs(graph: Graph, topo: Topology, out_dir: Path, local_mem_bw: float) -> dict:
    """Write the traces and the four AstraSim configuration files; returns their paths.

    ``local_mem_bw`` (bytes/s, the GPU's HBM bandwidth from the system spec) fills AstraSim's
    ``local-mem-bw``; the replay's graphs have no memory nodes, so it does not change times.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    write_traces(graph, topo.num_gpus, out_dir / "decode")
    files = {
        "workload": out_dir / "decode",
        "network": out_dir / "network.yml",
        "system": out_dir / "system.json",
        "memory": out_dir / "memory.json",
        "comm_group": out_dir / "comm_group.json",
    }
    dims = topo.dims
    files["network"].write_text(
        "# AstraSim analytical network: bandwidth GB/s (1e9 B/s) per link, latency ns per link\n"
        f"topology: [ {', '.join(_TOPO_NAMES[d.kind] for d in dims)} ]\n"
        f"npus_count: [ {', '.join(str(d.size) for d in dims)} ]\n"
        f"bandwidth: [ {', '.join(f'{_link_bw(d) / 1e9:g}' for d in dims)} ]\n"
        f"latency: [ {', '.join(f'{d.latency * 1e9:g}' for d in dims)} ]\n"
    )
    algos = _algorithms(graph)
    system = {
        "scheduling-policy": "FIFO",
        "endpoint-delay": 0,
        "active-chunks-per-dimension": 1,
        "preferred-dataset-splits": 1,
        "collective-optimization": "baseline",
        "local-mem-bw": local_mem_bw / 1e9,
        "boost-mode": 0,
    }
    for kind in ("all-reduce", "all-gather", "reduce-scatter", "all-to-all"):
        system[f"{kind}-implementation"] = [algos.get(kind, "ring")] * len(dims)
    files["system"].write_text(json.dumps(system, indent=2))
    files["memory"].write_text(json.dumps({"memory-type": "NO_MEMORY_EXPANSION"}))
    groups = {str(i): list(m) for m, i in comm_groups(graph).items()}
    files["comm_group"].write_text(json.dumps(groups))
    return files


def _link_bw(d) -> float:
    return d.bw / (d.size - 1) if d.kind == "fully_connected" and d.size > 1 else d.bw


def _algorithms(graph: Graph) -> dict[str, str]:
    """AstraSim implementation name per collective, from the graph's first use of each."""
    names = {
        "all_reduce": "all-reduce",
        "all_gather": "all-gather",
        "reduce_scatter": "reduce-scatter",
        "alltoall": "all-to-all",
    }
    out: dict[str, str] = {}
    for op in graph.ops:
        if op.kind == "collective":
            out.setdefault(names[op.collective], _ALGO_NAMES[op.algorithm])
    return out


def run(binary: Path, files: dict, timeout_s: float = DEFAULT_TIMEOUT_S) -> AstraResult:
    """Run AstraSim on written inputs; AstraSimError on failure, timeout or unreadable output."""
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
        cwd=files["network"].parent,
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
    return AstraResult(parse_finish(out), files["network"].parent)


def parse_finish(output: str) -> dict[int, float]:
    """Per-rank finish times (s) from AstraSim's log; AstraSimError when there are none."""
    finish = {int(r): int(c) * 1e-9 for r, c in _FINISHED.findall(output)}
    if not finish:
        raise AstraSimError("output has no 'sys[<rank>] finished, <cycles> cycles' lines")
    return finish
