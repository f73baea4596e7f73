"""The `aicpp-opt` command line. Subcommands live beside the part they drive and load lazily,
so `aicpp-opt solve` never imports calibration code (or aiconfigurator-core)."""

from __future__ import annotations

import importlib
import sys

import click

from aicpp_opt.errors import InfeasibleError, InputError

# name -> "module:attribute" of a click command or group.
SUBCOMMANDS: dict[str, str] = {
    "solve": "aicpp_opt.commands.optimise:solve_command",
    "size": "aicpp_opt.commands.optimise:size_command",
    "frontier": "aicpp_opt.commands.optimise:frontier",
    "compare": "aicpp_opt.commands.optimise:compare",
    "evaluate": "aicpp_opt.commands.evaluate:evaluate",
    "export": "aicpp_opt.commands.export:export_command",
    "replay": "aicpp_opt.commands.replay:replay",
    "calibrate": "calibrate.cli:calibrate",
    "model": "aicpp_opt.spec.cli:model",
    "sweep": "aicpp_opt.studies.cli:sweep",
    "explore": "aicpp_opt.commands.explore:explore",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use; user errors become one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = SUBCOMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except InputError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(2)
        except InfeasibleError as err:
            click.echo(f"infeasible: {err}", err=True)
            sys.exit(3)


@click.group(cls=LazyGroup)
@click.version_option(package_name="aicpp-opt")
def main() -> None:
    """Plan GPU fleets for serving MoE LLMs: aggregated, P/D or attention-FFN disaggregated."""


if __name__ == "__main__":
    main()
