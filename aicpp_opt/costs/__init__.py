"""Runtime access to the measured cost tables (`cost_tables/` only: never aiconfigurator-core,
pandas or pyarrow). `CostModel.load(system, framework=...)`, then `cm.curve(op, **axes)` gives a
`Curve` along the op's load axis from that framework's table; see docs/architecture.md, "Cost
tables"."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from aicpp_opt.costs.curve import Curve, Latency
from aicpp_opt.costs.store import SystemSpec, Table, find_root, read_system
from aicpp_opt.errors import InputError, brief
from aicpp_opt.paths import inside
from aicpp_opt.spec.enums import Framework, values

__all__ = ["CostModel", "Curve", "Latency", "SystemSpec", "Table"]


class CostModel:
    """The cost tables of one system as one serving framework sees them: every op from that
    framework's table; framework-neutral measurements (NCCL, a user's own) for any framework;
    where the framework has no table for an op, the system's preferred one, flagged as a
    fallback on every curve it gives. Tables load on first use and curves are cached."""

    def __init__(
        self, root: Path, system: SystemSpec, selection: dict, framework: str | None = None
    ):
        self.root = root
        self.system = system
        self.selection = selection
        self.framework = framework
        self._tables: dict[tuple[str, str], Table] = {}

    @classmethod
    def load(cls, system: str, root: Path | None = None, framework: str | None = None) -> CostModel:
        """The tables of ``system`` from ``root``, or from the first root of the search path
        that has them (``--tables``, ``$AICPP_TABLES``, the shipped tables)."""
        if framework is not None and framework not in values(Framework):
            raise InputError(
                "framework", f"unknown {brief(framework)}; use {', '.join(values(Framework))}"
            )
        root = find_root(system) if root is None else root
        spec, selection = read_system(root, system)
        return cls(root, spec, selection, framework)

    @property
    def ops(self) -> list[str]:
        return sorted(op for op, s in self.selection.items() if s.get("backend"))

    def available(self, op: str) -> list[str]:
        """Backends with a table for ``op`` on this system, preferred first."""
        chosen = self.selection.get(op) or {}
        return list(
            chosen.get("available") or ([chosen["backend"]] if chosen.get("backend") else [])
        )

    def backend(self, op: str) -> tuple[str, str]:
        """(backend whose table prices ``op``, fallback note: empty unless the deployment's
        framework has no table for it)."""
        chosen = self.selection.get(op)
        if chosen is None:
            raise InputError("op", f"unknown op {brief(op)}; valid: {', '.join(self.ops)}")
        have = self.available(op)
        if not have:
            raise InputError(op, f"no measured table on {self.system.name}: {chosen['reason']}")
        fw = self.framework
        if fw is None or fw in have:
            return (fw or have[0]), ""
        neutral = [b for b in have if b not in values(Framework)]
        if neutral:
            return neutral[0], ""
        return have[0], f"{fw} has no {op} table on {self.system.name}: {have[0]}'s used"

    def table(self, op: str, backend: str | None = None) -> Table:
        """The table of `op` from `backend` (default: the deployment framework's)."""
        if backend is None:
            backend, _ = self.backend(op)
        key = (op, backend)
        if key not in self._tables:
            path = inside(self.root, self.system.name, backend, f"{op}.json", field=op)
            if not path.is_file():
                raise InputError(
                    op,
                    f"missing table {path}; run: aicpp-opt calibrate kernels "
                    f"--system {self.system.name} --backend {backend}",
                )
            self._tables[key] = Table.read(path)
        return self._tables[key]

    def curve(self, op: str, backend: str | None = None, **axes) -> Curve:
        """Latency of `op` along its load axis at the given values of its other axes."""
        fallback = ""
        if backend is None:
            backend, fallback = self.backend(op)
        curve = self.table(op, backend).curve(axes)
        return replace(curve, fallback=fallback) if fallback else curve
