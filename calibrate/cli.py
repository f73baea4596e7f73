"""`aicpp-opt calibrate`: regenerate cost tables (`kernels`) and print their fit errors
(`report`), and fit link models (`comm`)."""

from __future__ import annotations

from pathlib import Path

import click

from aicpp_opt.costs.store import COST_TABLES_DIR
from calibrate.comm import calibrate_comm


@click.group()
def calibrate() -> None:
    """Build and inspect the measured cost tables under cost_tables/."""


@calibrate.command()
@click.option("--system", required=True, help="GPU system, e.g. h200_sxm.")
@click.option("--backend", default=None, help="Only this framework (sglang, vllm, trtllm, nccl).")
@click.option(
    "--source",
    default="aiconfigurator",
    show_default=True,
    help="'aiconfigurator' (the installed package) or a folder of CSV measurements.",
)
@click.option("--out", type=click.Path(path_type=Path), default=COST_TABLES_DIR, show_default=True)
def kernels(system: str, backend: str | None, source: str, out: Path) -> None:
    """Fit PWL surrogates to measured kernels and write cost_tables/<system>/."""
    if source == "aiconfigurator":
        from calibrate.aic import find_package
        from calibrate.kernels import calibrate_system

        written = calibrate_system(find_package(), system, out, backend)
    else:
        from calibrate.csv_source import calibrate_csv

        written = calibrate_csv(Path(source), system, out, backend)
    click.echo(f"wrote {len(written)} files under {out / system}")


@calibrate.command()
@click.option("--system", default=None, help="Only this system.")
@click.option("--json", "as_json", is_flag=True, help="One JSON record per table.")
@click.option("--root", type=click.Path(path_type=Path), default=COST_TABLES_DIR, show_default=True)
def report(system: str | None, as_json: bool, root: Path) -> None:
    """Held-out fit error and coverage of every table."""
    from calibrate.report import print_report

    print_report(root, system, as_json)


# ``calibrate comm`` (simulator sweeps of the collectives) lives beside the simulator.
calibrate.add_command(calibrate_comm)
