"""`aicpp-opt calibrate comm`: fit a system's link model to its measured communication tables,
and write the model curves an instance's unmeasured patterns are priced with."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click

from aicpp_opt.errors import InputError

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@click.command("comm")
@click.option("--system", default=None, help="Calibrate this system's link model.")
@click.option("--instance", default=None, help="Write the model curves of this instance.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for --instance's curves (default: comm_curves/<instance name>).",
)
def calibrate_comm(system, instance, out):
    """Fit a system's link model (overhead, hop latency, bandwidth efficiency per NCCL
    collective and DeepEP mode) to its measured tables and write cost_tables/<system>/
    link_model.json; with --instance, write the curves the runtime prices that instance's
    unmeasured patterns with."""
    from aicpp_opt.costs import CostModel, linkmodel

    if system is None and instance is None:
        raise InputError("--system", "give --system S (calibrate) and/or --instance I (curves)")
    if system is not None:
        cm = CostModel.load(system)
        tables = {op: cm.table(op) for op in linkmodel.TABLES if cm.available(op)}
        fits = linkmodel.calibrate(cm.system, tables)
        path = cm.root / system / linkmodel.FILE
        linkmodel.write(path, fits)
        for name, fit in sorted(fits.items()):
            click.echo(f"{name:<36} {fit.describe()}")
        click.echo(f"wrote {path}")
    if instance is not None:
        _write_curves(instance, out)


def _write_curves(instance: str, out: Path | None) -> None:
    from aicpp_opt.costs.comm import instance_curves
    from aicpp_opt.spec.instance import load_instance

    inst = load_instance(instance)
    if not SAFE_NAME.match(inst.name):
        raise InputError("name", f"{inst.name!r} cannot name a folder; use letters, digits, ._-")
    folder = out or Path("comm_curves") / inst.name
    folder.mkdir(parents=True, exist_ok=True)
    for pool, doc in instance_curves(inst).items():
        path = folder / f"{pool}.json"
        path.write_text(json.dumps(doc, indent=1) + "\n")
        click.echo(f"wrote {path} ({len(doc['series'])} patterns)")
