"""calibrate/CSV_FORMAT.md is what the CSV reader does: its op table lists every op with the
reader's load axis and axes, its category table the reader's values, and its own example
(system.json and CSV) calibrates."""

from __future__ import annotations

import json
import re

from click.testing import CliRunner

from aicpp_opt import PROJECT_ROOT
from aicpp_opt.cli import main
from calibrate.ops import CATEGORICAL, OPS

DOC = (PROJECT_ROOT / "calibrate" / "CSV_FORMAT.md").read_text()


def rows(first_header: str) -> list[list[str]]:
    """Cells of the markdown table whose header row starts with ``first_header``."""
    lines = DOC.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    out = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        out.append([c.strip() for c in line.strip("|").split("|")])
    return out


def names(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def test_op_table_lists_every_op_with_its_axes():
    seen = {}
    for ops, load, axes in rows("op"):
        for op in names(ops):
            seen[op] = (names(load)[0], [re.sub(r" \(.*\)", "", a) for a in names(axes)])
    assert seen == {op: (s.load_axis, list(s.axes)) for op, s in OPS.items()}


def test_category_table_lists_every_value():
    doc = {}
    for axes, values in rows("axis"):
        for axis in names(axes):
            doc[axis] = names(values)
    assert set(doc) == set(CATEGORICAL)
    for axis, allowed in CATEGORICAL.items():
        if isinstance(allowed, tuple):
            assert doc[axis] == list(allowed), axis
        else:
            assert all(allowed.fullmatch(v.replace("<a>", "1.01")) for v in doc[axis]), axis


def test_the_example_calibrates(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    system = re.search(r"```json\n(.*?)```", DOC, re.S).group(1)
    (src / "system.json").write_text(json.dumps(json.loads(system)))
    (src / "example.csv").write_text(re.search(r"```csv\n(.*?)```", DOC, re.S).group(1))
    out = tmp_path / "out"
    args = ["calibrate", "kernels", "--system", "mine", "--source", str(src), "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    selection = json.loads((out / "mine" / "selection.json").read_text())
    assert sorted(selection) == ["all_reduce", "gemm", "shared_expert"]
    assert json.loads((out / "mine" / "system.json").read_text())["runtime_reserve_bytes"] > 0
