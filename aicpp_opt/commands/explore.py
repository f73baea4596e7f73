"""``aicpp-opt explore``: the design-space studies of an instance (pareto, slo-map, af-ratio,
placement, dispatch, workload, cost) through the sweep's executor, one table and one figure
each, and one self-contained HTML report."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import click

from aicpp_opt.errors import InputError
from aicpp_opt.studies.explore import STUDY_NAMES

NO_SECOND_MODEL = "none"


@click.command(name="explore")
@click.argument("instance")
@click.option(
    "--study",
    "studies",
    multiple=True,
    help=f"A study to run (repeat for several; default: all): {', '.join(STUDY_NAMES)}.",
)
@click.option(
    "--out", "out_dir", type=click.Path(path_type=Path), default=Path("explore"), show_default=True
)
@click.option("--executor", default="local", show_default=True, help="local | ray")
@click.option("--workers", type=int, default=None, help="Processes (local) or Ray CPUs.")
@click.option("--address", default=None, help="A running Ray cluster (--executor ray).")
@click.option("--workload", "-w", default=None, help="The base workload (default: the first).")
@click.option(
    "--second-model",
    default="qwen3-235b-a22b",
    show_default=True,
    help=f"The other model of af-ratio and placement ({NO_SECOND_MODEL}: only the instance's).",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def explore(instance, studies, out_dir, executor, workers, address, workload, second_model, quiet):
    """Run the design-space studies of INSTANCE and write DIR/index.html with every figure and
    table (plus DIR/<study>.csv, .parquet and .png)."""
    for name in studies:
        if name not in STUDY_NAMES:
            raise InputError("--study", f"unknown study {name!r}; use {', '.join(STUDY_NAMES)}")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError("--out", f"{out_dir} is a file; give a folder")
    from aicpp_opt.studies.executor import Executor

    where = Executor(executor, workers, address)
    from aicpp_opt.commands.optimise import resolve_workload
    from aicpp_opt.report.explore_figures import plot_study
    from aicpp_opt.report.explore_page import write_page
    from aicpp_opt.report.summary import make_console
    from aicpp_opt.spec.instance import instance_path, load_instance
    from aicpp_opt.studies.explore.run import run_explore
    from aicpp_opt.studies.explore.setup import make_setup

    start = time.perf_counter()
    inst = load_instance(instance)
    name = resolve_workload(inst, workload, "--workload") if workload else None
    second = None if second_model == NO_SECOND_MODEL else second_model
    setup = make_setup(inst, name, second)
    console = make_console()

    def say(line: str) -> None:
        console.print(line, markup=False, highlight=False)

    show = not quiet and sys.stderr.isatty()
    results = run_explore(setup, studies, out_dir, where, say, progress=show)
    figures = {r.name: plot_study(r, out_dir / f"{r.name}.png") for r in results}
    command = _command_line(
        instance, studies, out_dir, executor, workers, address, workload, second_model
    )
    page = write_page(results, figures, setup, out_dir, command, instance_path(instance))
    for r in results:
        say(f"{r.name}: {r.title}")
        for line in r.statements:
            say(f"  {line}")
    seconds = time.perf_counter() - start
    say(f"wrote {page} and {len(results)} tables and figures in {seconds:.0f} s")


def _command_line(instance, studies, out_dir, executor, workers, address, workload, second):
    """The command that reproduces this run (every option spelled out)."""
    words = ["aicpp-opt", "explore", str(instance)]
    words += [w for s in studies for w in ("--study", s)]
    words += ["--out", str(out_dir), "--executor", executor]
    optional = (("--workers", workers), ("--address", address), ("--workload", workload))
    words += [w for flag, v in optional if v is not None for w in (flag, str(v))]
    return shlex.join([*words, "--second-model", second])
