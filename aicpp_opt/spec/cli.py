"""`aicpp-opt model import CONFIG.json`: write `models/<name>.json` from a Hugging Face config."""

from __future__ import annotations

from pathlib import Path

import click

from aicpp_opt.jsonio import write_text_atomic
from aicpp_opt.paths import inside, output_dir, safe_name
from aicpp_opt.spec.hf_config import import_hf_config
from aicpp_opt.spec.model import MODELS_DIR


@click.group()
def model() -> None:
    """Model architecture files under models/."""


@model.command("import")
@click.argument("config", type=click.Path(path_type=Path))
@click.option("--name", default=None, help="Model name (default: from the file name).")
@click.option("--out", type=click.Path(path_type=Path), default=MODELS_DIR, show_default=True)
def import_config(config: Path, name: str | None, out: Path) -> None:
    """Import a Hugging Face config.json (and a ModelOpt hf_quant_config.json beside it) as
    <out>/<name>.json."""
    if name is not None:
        safe_name(name, "--name")
    output_dir(out, "--out")
    spec = import_hf_config(config, name)
    target = inside(out, f"{spec.name}.json", field="--name")
    write_text_atomic(target, spec.to_json())
    click.echo(f"wrote {target} ({spec.total_params / 1e9:.1f}B parameters)")
