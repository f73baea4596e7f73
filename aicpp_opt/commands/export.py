"""``aicpp-opt export PLAN --format sglang|vllm|dynamo [--out DIR]``: write the launch
artefacts a team deploys a plan with, and print a short summary. The output folder is checked
before any work and every file is written atomically."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from aicpp_opt.jsonio import write_text_atomic
from aicpp_opt.paths import output_dir
from aicpp_opt.report.export.build import FORMATS, build_export
from aicpp_opt.report.export.inputs import read_export_input
from aicpp_opt.report.export.render import files
from aicpp_opt.report.summary import make_console


@click.command(name="export")
@click.argument("plan", type=click.Path(path_type=Path))
@click.option("--format", "fmt", required=True, help=" | ".join(FORMATS))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("export"))
@click.option(
    "--instance", default=None, help="Instance the plan was made for (default: the recorded one)."
)
@click.option("--model-path", default=None, help="Checkpoint to serve (default: the HF id).")
@click.option("--backend", default=None, help="Dynamo's worker: sglang | vllm.")
def export_command(plan, fmt, out_dir, instance, model_path, backend):
    """Launch scripts (SGLang, vLLM) or a Dynamo manifest for a plan, with a README that says
    which plan field every flag comes from."""
    output_dir(out_dir, "--out")
    inp = read_export_input(plan, instance, model_path)
    export = build_export(inp, fmt, backend)
    written = files(inp, export)
    for name, text in written.items():
        path = out_dir / name
        write_text_atomic(path, text)
        if name.endswith(".sh"):
            path.chmod(0o755)
    console = make_console()
    console.print(
        f"[bold]{escape(str(plan))}[/] -> {export.engine.name}"
        + (" on Dynamo" if export.manifest is not None else "")
        + escape(f" ({inp.plan.mode}, {inp.instance.name}, checkpoint {inp.model_path})")
    )
    for launch in export.launches:
        v, lay = launch.view, launch.view.layout
        console.print(
            escape(
                f"  {v.role.id}: {v.role.replicas} x {v.role.gpus_per_replica} GPUs "
                f"({lay.nodes} host(s) of {lay.gpus_per_node} per replica), "
                f"{len(launch.args.flags)} flags"
            )
        )
    for warning in export.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}")
    console.print(escape(f"wrote {', '.join(str(out_dir / n) for n in written)}"))
