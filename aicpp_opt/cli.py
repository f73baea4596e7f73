"""The `aicpp-opt` command line. Subcommands live beside the part they drive and load lazily,
so `aicpp-opt solve` never imports calibration code (or aiconfigurator-core).

Every command ends with its result or with one line on stderr and a documented exit code
(``aicpp_opt.errors.EXIT_CODES``): bad input and bad options 2, infeasible 3, time limit with no
plan 4, anything unexpected 1 with a hint to rerun with ``--debug`` for the traceback."""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import sys
import traceback
from pathlib import Path
from typing import NoReturn

import click

from aicpp_opt import deadline
from aicpp_opt.errors import EXIT_CODES, InfeasibleError, InputError, OutOfTimeError
from aicpp_opt.paths import TABLES_ENV, use_tables

# name -> "module:attribute" of a click command or group.
SUBCOMMANDS: dict[str, str] = {
    "solve": "aicpp_opt.commands.optimise:solve_command",
    "size": "aicpp_opt.commands.optimise:size_command",
    "frontier": "aicpp_opt.commands.optimise:frontier",
    "compare": "aicpp_opt.commands.optimise:compare",
    "evaluate": "aicpp_opt.commands.evaluate:evaluate",
    "export": "aicpp_opt.commands.export:export_command",
    "replay": "aicpp_opt.commands.replay:replay",
    "simulate": "aicpp_opt.commands.simulate:simulate",
    "calibrate": "calibrate.cli:calibrate",
    "model": "aicpp_opt.spec.cli:model",
    "sweep": "aicpp_opt.commands.sweep:sweep",
    "explore": "aicpp_opt.commands.explore:explore",
}

EPILOG = (
    "Exit codes: "
    + "; ".join(f"{code} {meaning}" for meaning, code in EXIT_CODES.items())
    + f". Cost tables are read from --tables DIR, then ${TABLES_ENV}, then the shipped ones."
)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _usage_line(err: click.UsageError) -> str:
    """A click usage error as ``<option>: <message>``."""
    param = getattr(err, "param", None)
    name = getattr(err, "option_name", None)
    if param is not None:
        name = max(param.opts, key=len) if param.opts else param.human_readable_name
    message = getattr(err, "message", "") or err.format_message()
    sub = err.ctx.command_path if err.ctx is not None else "aicpp-opt"
    return f"{name or 'command'}: {_one_line(message)} (see {sub} --help)"


def run_guarded(invoke, debug: bool) -> int:
    """Run ``invoke()`` and turn every outcome into an exit code and at most one stderr line."""
    try:
        result = invoke()
        return result if isinstance(result, int) else 0
    except click.exceptions.Exit as err:
        return err.exit_code
    except click.UsageError as err:
        click.echo(f"error: {_usage_line(err)}", err=True)
        return 2
    except click.ClickException as err:
        click.echo(f"error: {_one_line(err.format_message())}", err=True)
        return 2
    except click.Abort:
        click.echo("error: interrupted", err=True)
        return 130
    except InputError as err:
        click.echo(f"error: {_one_line(str(err))}", err=True)
        return 2
    except InfeasibleError as err:
        click.echo(f"infeasible: {_one_line(str(err))}", err=True)
        return 3
    except OutOfTimeError as err:
        click.echo(f"error: --time-limit: {_one_line(str(err))}", err=True)
        return 4
    except Exception as err:
        if debug:
            traceback.print_exc()
        detail = _one_line(str(err))[:200]
        click.echo(
            f"error: internal error ({type(err).__name__}: {detail}); this is a bug, rerun with "
            "--debug for the traceback",
            err=True,
        )
        return 1


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use; every failure becomes one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = SUBCOMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        argv = list(sys.argv[1:] if args is None else args)
        deadline.begin()
        code = run_guarded(
            lambda: super(LazyGroup, self).main(
                argv, prog_name, complete_var, standalone_mode=False, **extra
            ),
            debug="--debug" in argv,
        )
        if standalone_mode:
            sys.exit(code)
        return code


@click.group(cls=LazyGroup, epilog=EPILOG)
@click.version_option(package_name="aicpp-opt")
@click.option("--debug", is_flag=True, help="Show the traceback of an internal error.")
@click.option(
    "--tables",
    type=click.Path(path_type=Path),
    default=None,
    help=f"Folder of cost tables read before ${TABLES_ENV} and the shipped ones.",
)
def main(debug: bool, tables: Path | None) -> None:
    """Plan GPU fleets for serving MoE LLMs: aggregated, P/D or attention-FFN disaggregated."""
    use_tables(tables)


def entry() -> NoReturn:
    """The console script (and ``python -m aicpp_opt.cli``): ``main``, then its exit handlers
    and the standard streams, then the process ends without the interpreter's teardown of every
    module, about 0.2 s of each run once the scientific stack is loaded, spent freeing memory
    the system reclaims anyway. Every file the commands write is closed before ``main``
    returns. Under a profiler or tracer (cProfile, coverage, a debugger) it exits the usual
    way, so the tool writes its output."""
    code = main(standalone_mode=False)
    if sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing left to say
            stream.flush()
    os._exit(code if isinstance(code, int) else 1)


if __name__ == "__main__":
    entry()
