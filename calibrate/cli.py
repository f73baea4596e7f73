"""`aicpp-opt calibrate`: regenerate cost tables (`kernels`) and print their fit errors
(`report`), and fit link models (`comm`)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from aicpp_opt.costs.store import COST_TABLES_DIR
from aicpp_opt.paths import TABLES_ENV, output_dir, safe_name
from calibrate.comm import calibrate_comm


@click.group()
def calibrate() -> None:
    """Build and inspect the measured cost tables under cost_tables/."""


def out_root(out: Path | None) -> Path:
    """Where calibration writes: ``--out``, else ``$AICPP_TABLES`` (so the runtime reads what
    was written), else the shipped tables."""
    if out is None:
        env = os.environ.get(TABLES_ENV)
        out = Path(env) if env else COST_TABLES_DIR
    output_dir(out, "--out")
    return out


@calibrate.command()
@click.option("--system", required=True, help="GPU system, e.g. h200_sxm.")
@click.option("--backend", default=None, help="Only this framework (sglang, vllm, trtllm, nccl).")
@click.option(
    "--source",
    default="aiconfigurator",
    show_default=True,
    help="'aiconfigurator' (the installed package) or a folder of CSV measurements.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help=f"Cost-table root to write [default: ${TABLES_ENV}, else {COST_TABLES_DIR}].",
)
def kernels(system: str, backend: str | None, source: str, out: Path | None) -> None:
    """Fit PWL surrogates to measured kernels and write <out>/<system>/. Every input is checked
    and every table fitted before the first file is written."""
    safe_name(system, "--system")
    if backend is not None:
        safe_name(backend, "--backend")
    root = out_root(out)
    if source == "aiconfigurator":
        from calibrate.aic import find_package
        from calibrate.kernels import calibrate_system

        written = calibrate_system(find_package(), system, root, backend)
    else:
        from calibrate.csv_source import calibrate_csv

        written = calibrate_csv(Path(source), system, root, backend)
    click.echo(f"wrote {len(written)} files under {root / system}")


@calibrate.command()
@click.option("--system", default=None, help="Only this system.")
@click.option("--json", "as_json", is_flag=True, help="One JSON record per table.")
@click.option(
    "--root",
    type=click.Path(path_type=Path),
    default=None,
    help="Only this cost-table root [default: every root of the search path].",
)
def report(system: str | None, as_json: bool, root: Path | None) -> None:
    """Held-out fit error and coverage of every table."""
    from calibrate.report import print_report

    print_report(root, system, as_json)


# ``calibrate comm`` (link-model fit, instance curves) lives in calibrate/comm.py.
calibrate.add_command(calibrate_comm)
