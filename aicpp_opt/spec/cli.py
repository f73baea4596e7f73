"""`aicpp-opt model import CONFIG.json`: write `models/<name>.json` from a Hugging Face config."""

from __future__ import annotations

from pathlib import Path

import click

from aicpp_opt.spec.model import MODELS_DIR, import_hf_config


@click.group()
def model() -> None:
    """Model architecture files under models/."""


@model.command("import")
@click.argument("config", type=click.Path(path_type=Path))
@click.option("--name", default=None, help="Model name (default: from the file name).")
@click.option("--out", type=click.Path(path_type=Path), default=MODELS_DIR, show_default=True)
def import_config(config: Path, name: str | None, out: Path) -> None:
    """Import a Hugging Face config.json as models/<name>.json."""
    spec = import_hf_config(config, name)
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{spec.name}.json"
    target.write_text(spec.to_json())
    click.echo(f"wrote {target} ({spec.total_params / 1e9:.1f}B parameters)")
