"""``aicpp-opt solve``, ``size``, ``frontier`` and ``compare``: the optimiser's commands.

Options and output paths are checked first; the solver stack (pyomo) is imported only after,
so a bad option is rejected at once. ``--time-limit`` bounds the whole command."""

from __future__ import annotations

import math
import time
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from aicpp_opt import deadline
from aicpp_opt.errors import NOT_REACHED, InfeasibleError, InputError, OutOfTimeError, brief
from aicpp_opt.jsonio import write_json
from aicpp_opt.paths import output_dir, output_file
from aicpp_opt.spec.enums import Framework, values
from aicpp_opt.spec.instance import MODES, Instance, instance_path, load_instance

MODE_CHOICES = ("auto", *MODES)
FRAMEWORK_CHOICES = (*values(Framework), "all")
ROUTING_HELP = "eplb | balanced | power_law_<a>"
OBJECTIVE_HELP = "throughput | per-gpu | per-dollar"
MAX_LIST = 64
"""Most values a comma-separated option (budgets, TPOT targets) takes: each one is a solve."""


def positive_list(text: str, option: str, kind: type) -> list:
    """Comma-separated finite positive numbers, or a one-line error naming the option."""
    try:
        values_ = [kind(v) for v in text.split(",")]
    except ValueError:
        raise InputError(option, f"comma-separated positive numbers, got {brief(text)}") from None
    if any(not math.isfinite(v) or v <= 0 for v in values_):
        raise InputError(option, f"every value must be a finite positive number, got {brief(text)}")
    if len(values_) > MAX_LIST:
        raise InputError(option, f"at most {MAX_LIST} values (each is a solve), got {len(values_)}")
    return values_


def positive_seconds(value: float, option: str) -> float:
    if not math.isfinite(value) or value <= 0:
        raise InputError(option, f"must be a finite positive number of seconds, got {value}")
    return value


def parse_modes(mode: str, option: str = "--mode") -> tuple[str, ...] | None:
    """``auto`` means every mode the instance allows; else a comma-separated list."""
    if mode == "auto":
        return None
    modes = tuple(m.strip() for m in mode.split(","))
    for m in modes:
        if m not in MODES:
            raise InputError(option, f"unknown mode {brief(m)}; use auto or {', '.join(MODES)}")
    return modes


def resolve_workload(inst: Instance, name: str, option: str) -> str:
    """An instance workload by its name, or by its preset name (``chat`` for ``chat-relaxed``:
    the first the instance lists)."""
    names = [w.name for w in inst.workloads]
    if name in names:
        return name
    for n in names:
        if n.split("-")[0] == name or n.rsplit("-", 1)[0] == name:
            return n
    raise InputError(option, f"{brief(name)} is not a workload of {inst.name}; use one of {names}")


def name_values(inst: Instance, text: str, option: str) -> dict[str, float]:
    """``chat=40,coding=12`` -> {workload name: value}."""
    out: dict[str, float] = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        if not value:
            raise InputError(
                option, f"give name=value pairs like chat=40,coding=12, got {brief(text)}"
            )
        try:
            number = float(value)
        except ValueError:
            raise InputError(option, f"{brief(value)} is not a number") from None
        if not math.isfinite(number) or number <= 0:
            raise InputError(option, f"{brief(part)}: must be a finite positive number")
        wl = resolve_workload(inst, name.strip(), option)
        if wl in out:
            raise InputError(option, f"{wl} is given twice; give each workload once")
        out[wl] = number
    return out


def _workloads(inst: Instance, workload: str | None, mix: str | None):
    """(workloads, shares) of a throughput solve: one workload, a ``--mix``, or the
    instance's mix."""
    if workload and mix:
        raise InputError("--mix", "give --workload or --mix, not both")
    if workload:
        return (inst.workload(resolve_workload(inst, workload, "--workload")),), None
    if mix:
        shares = name_values(inst, mix, "--mix")
        return tuple(inst.workload(n) for n in shares), shares
    return None, None


def _frameworks(framework: str | None) -> list[str | None]:
    if framework is None:
        return [None]
    if framework not in FRAMEWORK_CHOICES:
        raise InputError("--framework", f"use one of {', '.join(FRAMEWORK_CHOICES)}")
    return list(values(Framework)) if framework == "all" else [framework]


def _solve_frameworks(console: Console, make, frameworks, solve_kw, better):
    """Solve per framework; the best by ``better`` wins (an infeasible framework is reported,
    all infeasible re-raises the first reason)."""
    from aicpp_opt.search.solve import solve

    results, reasons, late = [], {}, None
    for fw in frameworks:
        prob = make(fw)
        try:
            results.append((prob, solve(prob, **solve_kw(prob))))
        except InfeasibleError as err:
            if len(frameworks) == 1:
                raise
            reasons[prob.framework] = str(err)
        except OutOfTimeError as err:
            if len(frameworks) == 1:
                raise
            late, reasons[prob.framework] = err, NOT_REACHED
    if not results and late is not None:
        raise late
    if not results:
        raise InfeasibleError("; ".join(f"{fw}: {why}" for fw, why in reasons.items()))
    if len(frameworks) > 1:
        from aicpp_opt.report.outcome import framework_table

        console.print(framework_table(results, reasons))
    return max(results, key=lambda po: better(po[1]))


COMMON_OPTIONS = (
    click.option("--mode", default="auto", show_default=True, help=" | ".join(MODE_CHOICES)),
    click.option(
        "--framework",
        default=None,
        help="sglang | vllm | trtllm | all (default: the model's best-covered).",
    ),
    click.option("--routing", default="eplb", show_default=True, help=ROUTING_HELP),
    click.option(
        "--time-limit",
        type=float,
        default=300.0,
        show_default=True,
        help="Seconds for the whole command (capacities, MILP, checks); exit 4 if no plan.",
    ),
    click.option("--replay/--no-replay", default=True, show_default=True),
    click.option("--astra-sim", default=None, help="AstraSim binary to replay on too."),
    click.option(
        "--simulate/--no-simulate",
        default=True,
        show_default=True,
        help="Check the plan's SLO percentiles with the request-level simulation.",
    ),
    click.option(
        "--sim-duration",
        type=float,
        default=120.0,
        show_default=True,
        help="Seconds of arrivals the simulation check runs (a quarter of it warm-up).",
    ),
    click.option("--json", "json_out", type=click.Path(path_type=Path), default=None),
)
"""Options solve and size share."""


def _common_options(f):
    for option in reversed(COMMON_OPTIONS):
        f = option(f)
    return f


def _with_progress(console: Console, make):
    """``make`` with a progress bar for the capacity phase (a long phase on a cold cache)."""
    from rich.progress import Progress

    bar = Progress(console=console, transient=True)
    tasks: dict[str, object] = {}

    def show(workload: str, done: int, total: int) -> None:
        if workload not in tasks:
            bar.start()
            tasks[workload] = bar.add_task(f"capacities {workload}", total=total)
        bar.update(tasks[workload], completed=done)
        if done >= total:
            bar.stop()

    def build(fw, route):
        prob = make(fw, route)
        prob.progress = show
        return prob

    return build


def _check_options(time_limit, replay, astra_sim, json_out, sim_duration) -> None:
    """What solve and size check before any work: the limit starts counting, the output path
    and the AstraSim binary are usable, the simulation's duration is positive."""
    deadline.limit(positive_seconds(time_limit, "--time-limit"))
    positive_seconds(sim_duration, "--sim-duration")
    output_file(json_out, "--json")
    if astra_sim is not None:
        if not replay:
            raise InputError("--astra-sim", "is only used by the replay; drop --no-replay")
        from aicpp_opt.replay.astra import resolve_binary

        resolve_binary(astra_sim)


def _run(console, inst, make, framework, routing, time_limit, checks, better):
    """Solve per framework with the checks ``(replay, astra_sim, simulate, sim_duration)``."""
    from aicpp_opt.model.routing import parse_routing

    replay, astra_sim, simulate, sim_duration = checks
    route = parse_routing(routing, "--routing")
    frameworks = _frameworks(framework)
    deadline.phase("loading the solver and the cost tables")
    from aicpp_opt.replay.check import replay_checker
    from aicpp_opt.simulate.check import simulation_checker

    def kw(prob):
        return {
            "time_limit": time_limit,
            "replay": replay_checker(inst, route, astra_sim) if replay else None,
            "simulate": simulation_checker(inst, sim_duration) if simulate else None,
        }

    make = _with_progress(console, make)
    return _solve_frameworks(console, lambda fw: make(fw, route), frameworks, kw, better)


@click.command(name="solve")
@click.argument("instance")
@click.option("--workload", "-w", default=None, help="Serve this workload only.")
@click.option("--mix", default=None, help="Traffic shares, e.g. chat=0.7,coding=0.3.")
@click.option("--budget", type=int, default=None, help="GPUs at most (default: all).")
@click.option("--objective", default=None, help=OBJECTIVE_HELP)
@_common_options
def solve_command(
    instance,
    workload,
    mix,
    budget,
    objective,
    mode,
    framework,
    routing,
    time_limit,
    replay,
    astra_sim,
    simulate,
    sim_duration,
    json_out,
):
    """The plan with the most output tokens/s (or per GPU, per dollar) under the SLOs, for one
    workload or a traffic mix (the instance's ``mix`` by default)."""
    start = time.perf_counter()
    _check_options(time_limit, replay, astra_sim, json_out, sim_duration)
    if budget is not None and budget < 1:
        raise InputError("--budget", f"must be at least 1 GPU, got {budget}")
    modes = parse_modes(mode)
    inst = load_instance(instance)
    wls, shares = _workloads(inst, workload, mix)
    from aicpp_opt.report.summary import make_console

    console = make_console()

    def make(fw, route):
        from aicpp_opt.search.problem import make_problem

        return make_problem(inst, wls, modes, budget, objective, fw, route, shares=shares)

    prob, out = _run(
        console,
        inst,
        make,
        framework,
        routing,
        time_limit,
        (replay, astra_sim, simulate, sim_duration),
        better=lambda o: (
            o.solution.tokens_per_s / max(o.evaluated.gpus, 1)
            if (objective or "").startswith("per")
            else o.solution.tokens_per_s
        ),
    )
    _report(console, prob, out, time.perf_counter() - start, json_out, instance)


def _report(console, prob, out, seconds: float, json_out: Path | None, instance: str) -> None:
    """Print the outcome; with ``--json``, write it with the instance file it solved."""
    from aicpp_opt.report.outcome import outcome_dict, print_outcome

    print_outcome(console, prob, out, seconds)
    if json_out is not None:
        record = {**outcome_dict(prob, out), "instance": str(instance_path(instance).resolve())}
        write_json(json_out, record)
        console.print(escape(f"wrote {json_out}"))


@click.command(name="size")
@click.argument("instance")
@click.option("--demand", required=True, help="Requests/s per workload, e.g. chat=40,coding=12.")
@click.option("--per-dollar", is_flag=True, help="Cheapest in dollars (pool prices), not GPUs.")
@_common_options
def size_command(
    instance,
    demand,
    per_dollar,
    mode,
    framework,
    routing,
    time_limit,
    replay,
    astra_sim,
    simulate,
    sim_duration,
    json_out,
):
    """The cheapest fleet (fewest GPUs, or dollars with --per-dollar) of the instance's pools
    that serves DEMAND under every workload's SLOs, with its plan."""
    start = time.perf_counter()
    _check_options(time_limit, replay, astra_sim, json_out, sim_duration)
    modes = parse_modes(mode)
    inst = load_instance(instance)
    rates = name_values(inst, demand, "--demand")
    from aicpp_opt.report.summary import make_console

    console = make_console()

    def make(fw, route):
        from aicpp_opt.search.problem import make_problem

        return make_problem(
            inst, None, modes, None, None, fw, route, demand=rates, per_dollar=per_dollar
        )

    prob, out = _run(
        console,
        inst,
        make,
        framework,
        routing,
        time_limit,
        (replay, astra_sim, simulate, sim_duration),
        better=lambda o: -sum(o.solution.gpus.values()),
    )
    _report(console, prob, out, time.perf_counter() - start, json_out, instance)


time_limit_option = click.option(
    "--time-limit",
    type=float,
    default=1800.0,
    show_default=True,
    help="Seconds for the whole command; cases not reached are reported as such (exit 4).",
)


@click.command()
@click.argument("instance")
@click.option("--budgets", required=True, help="Comma-separated GPU budgets, e.g. 8,16,32,72.")
@click.option("--workload", "-w", default=None)
@click.option(
    "--modes",
    default="auto",
    show_default=True,
    help="auto (the instance's search.modes, the modes solve searches) or a comma-separated "
    f"list of {', '.join(MODES)}.",
)
@click.option(
    "--objective", default="throughput", show_default=True, help="throughput | per-gpu | per-dollar"
)
@click.option(
    "--tpots",
    default=None,
    help="TPOT targets (ms) of a per-GPU vs per-user front at the largest budget (off by default).",
)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("frontier"))
@time_limit_option
def frontier(instance, budgets, workload, modes, objective, tpots, out_dir, time_limit):
    """Best plan per GPU budget and mode (CSV, JSON, PNG); optionally the per-GPU vs per-user
    front of a TPOT sweep."""
    deadline.limit(positive_seconds(time_limit, "--time-limit"))
    sizes = positive_list(budgets, "--budgets", int)
    targets = positive_list(tpots, "--tpots", float) if tpots else []
    mode_list = parse_modes(modes, "--modes")
    output_dir(out_dir, "--out")
    inst = load_instance(instance)
    wl = inst.workload(resolve_workload(inst, workload, "--workload") if workload else None)
    from aicpp_opt.report.frontier import run_frontier
    from aicpp_opt.report.summary import make_console

    modes_used = mode_list or tuple(inst.search.modes)
    run_frontier(make_console(), inst, wl, sizes, modes_used, targets, out_dir, objective)


@click.command()
@click.argument("instance")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None)
@time_limit_option
def compare(instance, json_out, time_limit):
    """Best aggregated, P/D, AFD and AFD+P/D plan per workload and SLO tier, side by side,
    with AFD units colocated in an NVLink domain or split across it where the pools allow."""
    deadline.limit(positive_seconds(time_limit, "--time-limit"))
    output_file(json_out, "--json")
    inst = load_instance(instance)
    from aicpp_opt.report.compare import run_compare
    from aicpp_opt.report.summary import make_console

    run_compare(make_console(), inst, json_out)
