"""`aicpp-opt calibrate comm`: fit a system's link model to its measured communication tables,
and write the model curves an instance's unmeasured patterns are priced with."""

from __future__ import annotations

from pathlib import Path

import click

from aicpp_opt.errors import InputError
from aicpp_opt.jsonio import dumps_json, write_text_atomic
from aicpp_opt.paths import inside, output_dir, output_file, safe_name
from aicpp_opt.spec.instance import Instance, load_instance

CURVES_DIR = Path("comm_curves")


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
    unmeasured patterns with. Every option and output path is checked before any work."""
    from aicpp_opt.costs import CostModel, linkmodel

    if system is None and instance is None:
        raise InputError("--system", "give --system S (calibrate) and/or --instance I (curves)")
    if out is not None and instance is None:
        raise InputError("--out", "is the folder of --instance's curves; give --instance")
    if out is not None:
        output_dir(out, "--out")
    if system is not None:
        cm = CostModel.load(safe_name(system, "--system"))
        path = inside(cm.root, system, linkmodel.FILE, field="--system")
        output_file(path, "--system")
    if instance is not None:
        inst, folder = _curves_target(instance, out)
    if system is not None:
        tables = {op: cm.table(op) for op in linkmodel.TABLES if cm.available(op)}
        fits = linkmodel.calibrate(cm.system, tables)
        linkmodel.write(path, fits)
        for name, fit in sorted(fits.items()):
            click.echo(f"{name:<36} {fit.describe()}")
        click.echo(f"wrote {path}")
    if instance is not None:
        _write_curves(inst, folder)


def _curves_target(instance: str, out: Path | None) -> tuple[Instance, Path]:
    """The instance and the folder of its curves: ``--out``, else comm_curves/<instance name>
    (a plain file name), checked writable; pool names name the files, so they must be plain
    file names too."""
    inst = load_instance(instance)
    for i, pool in enumerate(inst.pools):
        safe_name(pool.name, f"cluster.pools[{i}].name")
    if out is not None:
        return inst, out
    folder = inside(CURVES_DIR, inst.name, field="name")
    output_dir(folder if CURVES_DIR.is_dir() else CURVES_DIR, "--out")
    return inst, folder


def _write_curves(inst: Instance, folder: Path) -> None:
    from aicpp_opt.costs.comm import instance_curves

    for pool, doc in instance_curves(inst).items():
        path = folder / f"{pool}.json"
        write_text_atomic(path, dumps_json(doc, indent=1))
        click.echo(f"wrote {path} ({len(doc['series'])} patterns)")
