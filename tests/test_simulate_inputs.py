"""The simulator's inputs and outputs: length and percentile statistics against known
distributions, traces and their errors, rates taken from the plan or refused, replica
placement, determinism by seed, the op-model pricing of a prefill forward, and the command."""

import json
import math
from dataclasses import replace
from statistics import NormalDist

import numpy as np
import pytest
from click.testing import CliRunner
from simulate_helpers import instance, plan, role

from aicpp_opt import PROJECT_ROOT
from aicpp_opt.cli import main
from aicpp_opt.errors import InputError
from aicpp_opt.evaluate.evaluation import contexts
from aicpp_opt.model.steps import prefill_step
from aicpp_opt.simulate import simulate_plan
from aicpp_opt.simulate.placement import link_domains, replica_domains
from aicpp_opt.simulate.pricing import OpModelPricer, RankLoad
from aicpp_opt.simulate.requests import lognormal_lengths, trace_arrivals
from aicpp_opt.simulate.stats import percentile, weighted_percentile
from aicpp_opt.simulate.trace import read_trace
from aicpp_opt.spec.instance import load_instance
from aicpp_opt.spec.plan import load_plan

PD_PLAN = PROJECT_ROOT / "instances" / "plans" / "nvl72_pd.json"


@pytest.fixture(scope="module")
def nvl72():
    return load_instance("h200_nvl72")


def test_percentiles_of_an_exponential_sample():
    x = np.random.default_rng(1).exponential(1.0, 200_000)
    for p in (50, 90, 99):
        assert percentile(x, p) == pytest.approx(-math.log(1 - p / 100), rel=0.02)


def test_weighted_percentile_is_the_percentile_of_the_repeated_sample():
    values, weights = np.array([3.0, 1.0, 2.0]), np.array([1.0, 6.0, 3.0])
    assert weighted_percentile(values, weights, 50) == 1.0
    assert weighted_percentile(values, weights, 90) == 2.0
    assert weighted_percentile(values, weights, 95) == 3.0


def test_a_late_request_makes_the_tail_infinite_not_flattering():
    x = np.array([1.0] * 8 + [2.0, math.inf])
    assert math.isinf(percentile(x, 95)) and percentile(x, 50) == 1.0


def test_lengths_are_lognormal_with_the_workload_mean_and_cv():
    x = lognormal_lengths(np.random.default_rng(2), 1000.0, 0.5, 100_000).astype(float)
    sigma = math.sqrt(math.log(1.25))
    p90 = math.exp(math.log(1000) - sigma**2 / 2 + sigma * NormalDist().inv_cdf(0.9))
    assert x.mean() == pytest.approx(1000, rel=0.01)
    assert x.std() / x.mean() == pytest.approx(0.5, rel=0.03)
    assert percentile(x, 90) == pytest.approx(p90, rel=0.02)
    assert set(lognormal_lengths(np.random.default_rng(2), 1024.0, 0.0, 10)) == {1024}


def _trace(tmp_path, text: str):
    path = tmp_path / "t.csv"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text,where",
    [
        ("time,input_tokens,output_tokens\n0,1,1\n", "header"),
        ("timestamp_s,input_tokens,output_tokens\n0,10,5\n1,x,5\n", "row 3 column input_tokens"),
        ("timestamp_s,input_tokens,output_tokens\n0,10,0\n", "row 2 column output_tokens"),
        ("timestamp_s,input_tokens,output_tokens\n2,10,5\n1,10,5\n", "row 3 column timestamp_s"),
        ("timestamp_s,input_tokens,output_tokens\n-1,10,5\n", "row 2 column timestamp_s"),
        ("timestamp_s,input_tokens,output_tokens\n0,10\n", "row 2"),
        ("timestamp_s,input_tokens,output_tokens\n", "no requests"),
    ],
)
def test_bad_trace_rows_name_row_and_column(tmp_path, text, where):
    with pytest.raises(InputError) as err:
        read_trace(_trace(tmp_path, text))
    assert where in str(err.value)


def test_a_repeated_prefix_id_finds_the_earlier_prompt_cached(tmp_path):
    rows = read_trace(
        _trace(tmp_path, "timestamp_s,input_tokens,output_tokens,prefix_id\n"
               "0,1000,5,a\n1,1500,5,a\n2,800,5,b\n3,600,5,a\n4,900,5,\n")
    )  # fmt: skip
    assert [a.cached for a in trace_arrivals(rows, 0.5)] == [0, 1000, 0, 599, 0]
    plain = read_trace(_trace(tmp_path, "timestamp_s,input_tokens,output_tokens\n0,1000,5\n"))
    assert [a.cached for a in trace_arrivals(plain, 0.8)] == [800]


def test_a_role_without_a_rate_is_refused_unless_one_is_given(nvl72):
    p = load_plan(PD_PLAN, nvl72)
    with pytest.raises(InputError) as err:
        simulate_plan(p, nvl72, duration_s=1.0)
    assert err.value.field == "roles[1].rate"


def test_replicas_take_the_placement_in_order():
    inst = instance(gpus=32)
    p = plan(
        inst,
        {**role("prefill", 4, replicas=2, dp=4, batch=1, chunk_tokens=4096),
         "placement": [{"pool": "h200", "domain": 0, "gpus": 4},
                       {"pool": "h200", "domain": 1, "gpus": 4}]},
        role("decode", 4, dp=4, batch_per_gpu=8, domain=1),
    )  # fmt: skip
    pre, dec = (replica_domains(r) for r in p.roles)
    assert pre == [{("h200", 0)}, {("h200", 1)}] and dec == [{("h200", 1)}]
    assert [link_domains(x, dec[0]) for x in pre] == [2, 1]


@pytest.mark.parametrize("batch,k", [(1, 1), (4, 2)])
def test_a_prefill_forward_at_the_plans_batch_is_the_op_models_prefill(nvl72, batch, k):
    """A full forward (every rank with ``batch`` whole prompts) costs what the op model's
    prefill of the role costs, micro-batches included."""
    p = load_plan(PD_PLAN, nvl72)
    pre = replace(p.roles[0], batch=batch, micro_batches=k)
    ctxs = contexts(nvl72, p)
    isl = int(ctxs[pre.workload].workload.isl)
    loads = [RankLoad(0, ((0, isl),) * batch)] * pre.shape.attn_dp
    seconds = OpModelPricer(ctxs).forward(pre, loads)
    assert seconds == pytest.approx(prefill_step(ctxs[pre.workload], pre).total, rel=1e-9)


def test_same_seed_same_run_other_seed_other_run(nvl72):
    p = load_plan(PD_PLAN, nvl72)

    def run(seed):
        return simulate_plan(p, nvl72, duration_s=20.0, seed=seed, rates={"chat-relaxed": 8.0})

    first = run(5).to_dict()
    assert run(5).to_dict() == first
    assert run(6).to_dict() != first


def test_the_command_writes_percentiles_throughput_and_attainment(tmp_path):
    out = tmp_path / "sim.json"
    args = ["simulate", "h200_nvl72", str(PD_PLAN), "--rate", "6", "--duration", "80"]
    result = CliRunner().invoke(main, [*args, "--warmup", "40", "--json", str(out)])
    assert result.exit_code == 0, result.output
    w = json.loads(out.read_text())["workloads"]["chat-relaxed"]
    for key in ("ttft_ms", "tpot_ms"):
        assert set(w[key]) == {"mean", "p50", "p90", "p99"}
        assert w[key]["p50"] <= w[key]["p90"] <= w[key]["p99"]
    # flow conservation in steady state: tokens out = requests in x output tokens
    assert w["throughput_tok_s"] == pytest.approx(6 * 512, rel=0.15)
    assert 0 <= w["slo_attainment"] <= 1


def test_the_command_turns_a_bad_trace_into_one_line(tmp_path):
    bad = _trace(tmp_path, "timestamp_s,input_tokens,output_tokens\n0,ten,5\n")
    result = CliRunner().invoke(main, ["simulate", "h200_nvl72", str(PD_PLAN), "--trace", str(bad)])
    assert result.exit_code == 2
    assert "row 2 column input_tokens" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("name,rate", [("nvl72_agg", 3.0), ("nvl72_afd", 6.0)])
def test_shipped_plans_keep_the_flow(nvl72, name, rate):
    """At a light load every measured request finishes and tokens leave as fast as requests
    bring them (rate x output tokens)."""
    p = load_plan(PROJECT_ROOT / "instances" / "plans" / f"{name}.json", nvl72)
    res = simulate_plan(p, nvl72, duration_s=90.0, warmup_s=45.0, rates={"chat-relaxed": rate})
    w = res.workload()
    assert w.unfinished == 0 and w.requests > 0
    assert w.throughput_tok_s == pytest.approx(rate * 512, rel=0.15)
