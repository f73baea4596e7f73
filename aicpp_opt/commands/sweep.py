"""``aicpp-opt sweep``: many scenarios solved in parallel, locally or on Ray, resumable."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from aicpp_opt.report.summary import make_console
from aicpp_opt.studies.executor import EXECUTORS, Executor
from aicpp_opt.studies.sweep import run_sweep
from aicpp_opt.studies.sweep_spec import expand, load_spec


@click.command()
@click.argument("spec", type=click.Path(path_type=Path))
@click.option("--executor", default="local", show_default=True, help=" | ".join(EXECUTORS))
@click.option(
    "--workers", type=int, default=None, help="Processes (local) or CPUs of a local Ray instance."
)
@click.option("--address", default=None, help="A running Ray cluster to use (--executor ray).")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Table, .parquet or .csv [default: SPEC's name + .parquet, here].",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def sweep(spec, executor, workers, address, out, quiet):
    """Solve every scenario of SPEC.yaml (instances x workloads x SLO tiers x budgets x models
    x frameworks x modes x objectives): one row each in a parquet/CSV table, a summary PNG, and
    a resume log so a rerun solves only what is missing."""
    start = time.perf_counter()
    where = Executor(executor, workers, address)
    expansion = expand(load_spec(spec))
    console = make_console()

    def say(line: str) -> None:
        console.print(line, markup=False, highlight=False)

    say(f"{spec}: {len(expansion.scenarios)} scenarios")
    for note in expansion.notes:
        say(note)
    out = out if out is not None else Path(f"{spec.stem}.parquet")
    show = not quiet and sys.stderr.isatty()
    run = run_sweep(expansion.scenarios, out, where, say, progress=show)
    counts = run.table["status"].value_counts()
    say(
        ", ".join(f"{counts[s]} {s}" for s in counts.index)
        + f"; {run.solved} solved in this run, {time.perf_counter() - start:.1f} s"
    )
    say("wrote " + ", ".join(str(p) for p in run.paths))
