"""Runtime access to the measured cost tables (`cost_tables/` only: never aiconfigurator-core,
pandas or pyarrow). `CostModel.load(system)`, then `cm.curve(op, **axes)` gives a `Curve`
along the op's load axis; see docs/architecture.md, "Cost tables"."""

from __future__ import annotations

from pathlib import Path

from aicpp_opt.costs.curve import Curve, Latency
from aicpp_opt.costs.store import COST_TABLES_DIR, SystemSpec, Table, read_system
from aicpp_opt.errors import InputError

__all__ = ["CostModel", "Curve", "Latency", "SystemSpec", "Table"]


class CostModel:
    """The cost tables of one system; tables load on first use and curves are cached."""

    def __init__(self, root: Path, system: SystemSpec, selection: dict):
        self.root = root
        self.system = system
        self.selection = selection
        self._tables: dict[tuple[str, str], Table] = {}

    @classmethod
    def load(cls, system: str, root: Path = COST_TABLES_DIR) -> CostModel:
        spec, selection = read_system(root, system)
        return cls(root, spec, selection)

    @property
    def ops(self) -> list[str]:
        return sorted(op for op, s in self.selection.items() if s.get("backend"))

    def table(self, op: str, backend: str | None = None) -> Table:
        """The table of `op` from `backend` (default: the system's selection)."""
        if backend is None:
            chosen = self.selection.get(op)
            if chosen is None:
                raise InputError("op", f"unknown op {op!r}; valid: {', '.join(self.ops)}")
            if not chosen.get("backend"):
                raise InputError(op, f"no measured table on {self.system.name}: {chosen['reason']}")
            backend = chosen["backend"]
        key = (op, backend)
        if key not in self._tables:
            path = self.root / self.system.name / backend / f"{op}.json"
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
        return self.table(op, backend).curve(axes)
