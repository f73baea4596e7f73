"""``aicpp-opt simulate INSTANCE PLAN``: the request-level simulation of a plan (see
``docs/simulate.md``): TTFT, TPOT and ITL percentiles, throughput and SLO attainment per
workload and per role, with a progress bar; ``--json`` and ``--png`` write them (paths checked
before the run, JSON through the serialiser). Exits 3 when a workload misses its TTFT or TPOT
target at the SLO percentile."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from aicpp_opt.errors import InfeasibleError, InputError
from aicpp_opt.jsonio import write_json
from aicpp_opt.paths import output_file
from aicpp_opt.report.summary import make_console
from aicpp_opt.simulate import SimResult, simulate_plan
from aicpp_opt.simulate.flows import ROUTERS
from aicpp_opt.simulate.plot import plot_latencies
from aicpp_opt.simulate.stats import ms_text
from aicpp_opt.spec.instance import load_instance
from aicpp_opt.spec.model import load_model
from aicpp_opt.spec.plan import load_plan


def print_result(res: SimResult, console: Console) -> None:
    t = Table(title=f"simulated ({res.source}, seed {res.seed}, router {res.router})")
    cols = ["workload", "req/s", "requests", "TTFT mean/p50/p90/p99 ms",
            "TPOT mean/p50/p90/p99 ms", "ITL p90 ms", "tok/s", "SLO met"]  # fmt: skip
    for col in cols:
        t.add_column(col, justify="left" if col == "workload" else "right")
    for name, w in res.workloads.items():
        t.add_row(
            escape(name),
            "trace" if w.rate_rps is None else f"{w.rate_rps:.2f}",
            f"{w.requests}" + (f" ({w.unfinished} unfinished)" if w.unfinished else ""),
            " / ".join(ms_text(x) for x in (w.ttft.mean, w.ttft.p50, w.ttft.p90, w.ttft.p99)),
            " / ".join(ms_text(x) for x in (w.tpot.mean, w.tpot.p50, w.tpot.p90, w.tpot.p99)),
            ms_text(w.itl.p90),
            f"{w.throughput_tok_s:,.0f}",
            f"{w.slo_attainment:.1%}",
        )
    console.print(t)
    r = Table(title="per role")
    for col in ("role", "kind", "requests", "wait mean/p90 ms", "seat wait mean/p90 ms",
                "TTFT p90 ms", "TPOT p90 ms", "ITL p90 ms", "batch/GPU"):  # fmt: skip
        r.add_column(col, justify="left" if col in ("role", "kind") else "right")
    for rid, s in res.roles.items():
        r.add_row(
            escape(rid),
            s.kind.value,
            str(s.requests),
            f"{ms_text(s.wait.mean)} / {ms_text(s.wait.p90)}" if s.wait else "",
            f"{ms_text(s.seat_wait.mean)} / {ms_text(s.seat_wait.p90)}" if s.seat_wait else "",
            ms_text(s.ttft.p90) if s.ttft else "",
            ms_text(s.tpot.p90) if s.tpot else "",
            ms_text(s.itl.p90) if s.itl else "",
            f"{s.batch_per_gpu:.1f}" if s.batch_per_gpu is not None else "",
        )
    console.print(r)
    start, end = res.window
    console.print(
        f"measured: requests arriving in [{start:g}, {end:g}) s; run ended at "
        f"{res.ended_at:.1f} s after {res.events:,} events"
    )
    for note in res.notes:
        console.print(escape(f"note: {note}"))


def _misses(res: SimResult) -> list[str]:
    out = []
    for name, w in res.workloads.items():
        p = f"p{w.slo.percentile:g}"
        if not w.slo_ttft <= w.slo.ttft:
            out.append(f"{name}: TTFT {p} {ms_text(w.slo_ttft)} ms > {w.slo.ttft * 1e3:g} ms")
        if not w.slo_tpot <= w.slo.tpot:
            out.append(f"{name}: TPOT {p} {ms_text(w.slo_tpot)} ms > {w.slo.tpot * 1e3:g} ms")
    return out


@click.command(name="simulate")
@click.argument("instance")
@click.argument("plan", type=click.Path(path_type=Path))
@click.option("--workload", "-w", default=None, help="Simulate only this workload of the plan.")
@click.option(
    "--trace",
    type=click.Path(path_type=Path),
    default=None,
    help="CSV of timestamp_s,input_tokens,output_tokens[,prefix_id] instead of Poisson arrivals.",
)
@click.option(
    "--duration", type=float, default=None, help="Seconds of arrivals (default 600; a trace: all)."
)
@click.option(
    "--warmup",
    type=float,
    default=None,
    help="Arrivals before this are not measured (default: a quarter of the duration; trace 0).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--rate", type=float, default=None, help="Requests/s instead of the plan's rates.")
@click.option("--router", type=click.Choice(ROUTERS), default="random", show_default=True)
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None)
@click.option("--png", "png_out", type=click.Path(path_type=Path), default=None)
def simulate(
    instance, plan, workload, trace, duration, warmup, seed, rate, router, json_out, png_out
):
    """Simulate PLAN on INSTANCE request by request; exit 3 when an SLO percentile is missed."""
    output_file(json_out, "--json")
    output_file(png_out, "--png")
    inst = load_instance(instance)
    p = load_plan(plan, inst, load_model(inst.model).moe.num_experts)
    rates = None
    if rate is not None:
        names = [workload] if workload else p.workloads
        if len(names) > 1:
            raise InputError("--rate", f"the plan serves {', '.join(names)}; give --workload too")
        rates = {names[0]: rate}
    console = make_console()
    with Progress(
        TextColumn("simulating"),
        BarColumn(),
        TextColumn("{task.completed:.0f} s simulated"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("simulate", total=None)

        def progress(now: float, end: float) -> None:
            bar.update(task, completed=min(now, end), total=end)

        res = simulate_plan(
            p,
            inst,
            duration_s=duration,
            seed=seed,
            workload=workload,
            rates=rates,
            trace=trace,
            router=router,
            warmup_s=warmup,
            progress=progress,
        )
    print_result(res, console)
    if json_out is not None:
        write_json(json_out, res.to_dict())
    if png_out is not None:
        plot_latencies(res, png_out, inst.name)
        console.print(escape(f"wrote {png_out}"))
    misses = _misses(res)
    if misses:
        raise InfeasibleError(f"SLO missed: {'; '.join(misses)}")
