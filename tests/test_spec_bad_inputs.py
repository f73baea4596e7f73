"""The hostile corpus (tests/bad_inputs/): every file is run through the command that reads
its kind of file, in process. Each must end with its documented exit code (never 0, never 1),
exactly one stderr line that starts with ``error: <field>`` (``infeasible: <reason>`` for exit
3), no traceback, within 60 s, and write nothing: not into the checkout (``git status`` is
unchanged) and not into the folder the command was asked to write to.

File kinds, by name prefix: ``instance_`` / ``workload_`` (instances, via ``evaluate``),
``plan_`` (``evaluate`` on small_h200_16), ``hetero_`` (a plan ``evaluate``d on the two-pool
hetero_h200_b200), ``model_`` (a model file named by an instance),
``hf_`` (``model import``), ``hfquant_`` (a ModelOpt ``hf_quant_config.json`` beside a good
config), ``csv_`` (a calibration CSV beside a good system.json), ``system_`` (a calibration
system.json beside a good CSV), ``table_`` / ``selection_`` (a cost-table root read by
``calibrate report``), ``comm_`` (an instance for ``calibrate comm``), ``astra_`` (an
``--astra-sim`` binary), ``solve_`` (instances that parse
but cannot be solved). ``options.json`` lists bad command lines."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from aicpp_opt import PROJECT_ROOT
from aicpp_opt.cli import main

CORPUS = Path(__file__).parent / "bad_inputs"
EXPECTED: dict[str, dict] = json.loads((CORPUS / "expected.json").read_text())
OPTIONS: list[dict] = json.loads((CORPUS / "options.json").read_text())
GOOD = {
    "good_plan.json",
    "good_afd_plan.json",
    "good_hf_config.json",
    "good_system.json",
    "good_measurements.csv",
}
BOUND_S = 60
SMALL = str(PROJECT_ROOT / "instances" / "small_h200_16.json")
HETERO = str(PROJECT_ROOT / "instances" / "hetero_h200_b200.json")
PLAN = str(CORPUS / "good_plan.json")


def git_status() -> str:
    return subprocess.run(
        ["git", "status", "--porcelain"], capture_output=True, text=True, cwd=PROJECT_ROOT
    ).stdout


STATUS = git_status()


def _calibration(tmp: Path, csv: Path, system: Path, out: Path) -> list[str]:
    src = tmp / "src"
    src.mkdir()
    shutil.copy(csv, src / "m.csv")
    shutil.copy(system, src / "system.json")
    return [
        "calibrate",
        "kernels",
        "--system",
        "corpus_sys",
        "--source",
        str(src),
        "--out",
        str(out),
    ]


def _table_root(tmp: Path, table: Path | None, selection: Path | None) -> list[str]:
    base = tmp / "root" / "corpus_sys"
    (base / "custom").mkdir(parents=True)
    shutil.copy(CORPUS / "good_system.json", base / "system.json")
    sel = {"all_reduce": {"backend": "custom", "reason": "corpus"}}
    (base / "selection.json").write_text(json.dumps(sel))
    if selection is not None:
        shutil.copy(selection, base / "selection.json")
    if table is not None:
        shutil.copy(table, base / "custom" / "all_reduce.json")
    return ["calibrate", "report", "--root", str(tmp / "root"), "--system", "corpus_sys"]


def command(name: str, tmp: Path, out: Path) -> list[str]:
    """The command line that reads corpus file ``name`` as its kind of input."""
    path = CORPUS / name
    kind = name.split("_", 1)[0]
    if kind in ("instance", "workload"):
        return ["evaluate", str(path), PLAN]
    if kind == "plan":
        return ["evaluate", SMALL, str(path)]
    if kind == "hetero":
        return ["evaluate", HETERO, str(path)]
    if kind == "model":
        inst = json.loads(Path(SMALL).read_text()) | {"model": str(path)}
        (tmp / "instance.json").write_text(json.dumps(inst))
        return ["evaluate", str(tmp / "instance.json"), PLAN]
    if kind == "hf":
        return ["model", "import", str(path), "--out", str(out)]
    if kind == "hfquant":
        shutil.copy(CORPUS / "good_hf_config.json", tmp / "config.json")
        shutil.copy(path, tmp / "hf_quant_config.json")
        return ["model", "import", str(tmp / "config.json"), "--out", str(out)]
    if kind == "csv":
        return _calibration(tmp, path, CORPUS / "good_system.json", out)
    if kind == "system":
        return _calibration(tmp, CORPUS / "good_measurements.csv", path, out)
    if kind == "table":
        return _table_root(tmp, path, None)
    if kind == "selection":
        return _table_root(tmp, None, path)
    if kind == "comm":
        return ["calibrate", "comm", "--instance", str(path)]
    if kind == "astra":
        return ["replay", SMALL, PLAN, "--astra-sim", str(path)]
    if kind == "solve":
        limit = "5" if EXPECTED[name]["exit"] == 4 else "50"
        return ["solve", str(path), "--no-replay", "--time-limit", limit]
    raise AssertionError(f"no command for corpus file {name}")


def _timeout(signum, frame):
    raise TimeoutError(f"a hostile input ran past {BOUND_S} s")


def check(
    args: list[str], field: str, code: int, out: Path | None = None, env: dict | None = None
) -> None:
    """Run ``args``; assert the exit code, one stderr line naming ``field``, nothing written."""
    signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(BOUND_S)
    try:
        result = CliRunner().invoke(main, args, env=env)
    finally:
        signal.alarm(0)
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    kind = "infeasible" if code == 3 else "error"
    assert lines[0].startswith(f"{kind}: {field}"), lines[0]
    assert "Traceback" not in result.output
    assert git_status() == STATUS
    if out is not None:
        assert not out.exists() or not any(out.iterdir()), sorted(out.rglob("*"))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_hostile_file_is_one_line_naming_the_field(name, tmp_path):
    want = EXPECTED[name]
    assert want["exit"] in (2, 3, 4)
    out = tmp_path / "out"
    out.mkdir()
    check(command(name, tmp_path, out), want["field"], want["exit"], out)


@pytest.mark.parametrize("case", OPTIONS, ids=[" ".join(c["args"])[:80] for c in OPTIONS])
def test_hostile_option_is_one_line_naming_it(case, tmp_path):
    subs = {"{SMALL}": SMALL, "{PLAN}": PLAN, "{TMP}": str(tmp_path), "{CORPUS}": str(CORPUS)}

    def fill(text: str) -> str:
        for key, value in subs.items():
            text = text.replace(key, value)
        return text

    env = {k: fill(v) for k, v in case.get("env", {}).items()}
    check([fill(a) for a in case["args"]], case["field"], case["exit"], env=env)


@pytest.mark.parametrize(
    ("csv", "system", "field"),
    [
        ("csv_nan_latency.csv", "good_system.json", "m.csv:5 latency_ms"),
        (
            "good_measurements.csv",
            "system_missing_reserve.json",
            "system.json.runtime_reserve_bytes",
        ),
    ],
)
def test_rejected_calibration_of_a_shipped_system_changes_nothing(csv, system, field, tmp_path):
    """Calibrating over the checkout's own h200_sxm tables (the default --out) with one bad
    input: exit 2, and every shipped file (system.json with its reserves first) is untouched."""
    shipped = PROJECT_ROOT / "cost_tables" / "h200_sxm"
    before = {p: p.read_bytes() for p in shipped.rglob("*.json")}
    args = _calibration(tmp_path, CORPUS / csv, CORPUS / system, tmp_path)
    args = args[: args.index("--out")]
    args[args.index("corpus_sys")] = "h200_sxm"
    check([*args, "--backend", "nccl"], field, 2, env={"AICPP_TABLES": None})
    assert {p: p.read_bytes() for p in shipped.rglob("*.json")} == before


def test_input_that_is_a_folder_or_too_large(tmp_path):
    folder = tmp_path / "instance.json"
    folder.mkdir()
    check(["evaluate", str(folder), PLAN], "instance", 2)
    huge = tmp_path / "huge.json"
    with huge.open("wb") as f:  # sparse: no disk is used
        f.truncate(65 * 2**20)
    check(["evaluate", SMALL, str(huge)], "plan", 2)
    check(["model", "import", str(folder), "--out", str(tmp_path)], "config", 2)


def test_corpus_lists_every_file():
    files = {p.name for p in CORPUS.iterdir()} - GOOD - {"expected.json", "options.json"}
    assert files == set(EXPECTED)
    assert len(files) >= 150


def test_names_with_console_markup_are_printed_as_written(tmp_path):
    """Names are user text, not rich markup: a role id '[/]' once crashed evaluate, and a
    bracketed workload name vanished from the output."""
    inst = json.loads(Path(SMALL).read_text())
    inst["workloads"] = [{"preset": "chat", "name": "[bold]chat"}]
    plan = json.loads(Path(PLAN).read_text())
    plan["roles"][0]["id"] = "[/]"
    for name, doc in (("instance.json", inst), ("plan.json", plan)):
        (tmp_path / name).write_text(json.dumps(doc))
    args = ["evaluate", str(tmp_path / "instance.json"), str(tmp_path / "plan.json")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "[/] (prefill)" in result.output and "[bold]chat: TPOT" in result.output
