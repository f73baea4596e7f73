"""The disk cache is user-writable state: a capacity file that is not what the solver stored
(not JSON, NaN, another shape, wrong types) is recomputed, never trusted and never a crash; a
good file is read back to the same options. The same holds for the link model's stored
curves."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aicpp_opt import PROJECT_ROOT
from aicpp_opt.costs.comm import model_curve, stored_model_curve
from aicpp_opt.costs.linkmodel import NOMINAL
from aicpp_opt.netsim.patterns import Geometry, Pattern
from aicpp_opt.netsim.topology import Dim, Topology
from aicpp_opt.search.problem import make_problem
from aicpp_opt.search.solve import Timing, options
from aicpp_opt.spec.instance import parse_instance

SEARCH = {"modes": ["pd"], "tp_values": [8], "max_ep": 8, "max_micro_batches": 1, "mtp_drafts": [0]}
"""A small search space of the small instance: its capacities settle in about a second."""


def solved(monkeypatch, folder):
    monkeypatch.setenv("AICPP_OPT_CACHE", str(folder))
    doc = json.loads((PROJECT_ROOT / "instances" / "small_h200_16.json").read_text())
    prob = make_problem(parse_instance(doc | {"search": SEARCH}))
    timing = Timing()
    return [(o.family.key, o.capacity) for o in options(prob, frozenset(), timing)], timing


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    """The options of a cold solve, and the files it cached: {"known": ..., "samples": ...}."""
    mp = pytest.MonkeyPatch()
    folder = tmp_path_factory.mktemp("cache")
    try:
        opts, _ = solved(mp, folder)
    finally:
        mp.undo()
    files = {
        p: json.loads(p.read_text())
        for p in folder.glob("*.json")
        if not p.name.startswith("curve-")
    }
    known = next(p for p, d in files.items() if all(isinstance(v, list) for v in d.values()))
    (samples,) = set(files) - {known}
    return opts, {"known": known, "samples": samples}


def test_stored_files_read_back_to_the_same_options(monkeypatch, first):
    opts, files = first
    again, timing = solved(monkeypatch, files["known"].parent)
    assert timing.cached == 1 and timing.exact == 0 and again == opts


def _known(doc: dict, value) -> dict:
    return {k: value for k in doc}


BROKEN = {
    "not JSON": ("known", lambda doc: "{"),
    "a list": ("known", lambda doc: "[1, 2]"),
    "NaN": ("known", lambda doc: json.dumps(_known(doc, [1.0, None])).replace("1.0", "NaN")),
    "entry too short": ("known", lambda doc: json.dumps(_known(doc, [1.0]))),
    "capacity too short": ("known", lambda doc: json.dumps(_known(doc, [1e9, [1.0, 2.0]]))),
    "strings": ("known", lambda doc: json.dumps(_known(doc, ["1", ["1", "1", "1", "x"]]))),
    "samples not objects": ("samples", lambda doc: json.dumps(_known(doc, 5))),
}


@pytest.mark.parametrize(("which", "damage"), BROKEN.values(), ids=BROKEN.keys())
def test_a_damaged_file_is_recomputed(monkeypatch, first, tmp_path, which, damage):
    """The damaged file alone (samples are read when no capacities are known)."""
    opts, files = first
    path = files[which]
    (tmp_path / path.name).write_text(damage(json.loads(path.read_text())))
    again, timing = solved(monkeypatch, tmp_path)
    assert timing.exact > 0 and again == opts


CURVE = (Geometry(Pattern.ALL_GATHER, 8), Topology((Dim("switch", 8, 450e9, 1e-6),)))


def test_a_stored_curve_reads_back_to_the_simulated_one(monkeypatch, tmp_path):
    monkeypatch.setenv("AICPP_OPT_CACHE", str(tmp_path))
    geom, topo = CURVE
    first = stored_model_curve(geom, NOMINAL, topo)
    (path,) = tmp_path.glob("curve-*.json")
    again = stored_model_curve(geom, NOMINAL, topo)
    fresh = model_curve(geom, NOMINAL, topo)
    for curve in (first, again):
        assert np.array_equal(curve.seconds, fresh.seconds)
        assert np.array_equal(curve.pwl_seconds, fresh.pwl_seconds)
        assert curve.source == fresh.source


DAMAGED_CURVES = [
    "{",
    "[1]",
    '{"x": [1, 2]}',
    '{"op": 1, "x": "ab"}',
    '{"op": "a", "axis": "b", "x": [1], "y": [1, 2], "pwl_x": [1], "pwl_y": [1], "source": ""}',
    '{"op": "a", "axis": "b", "x": [], "y": [], "pwl_x": [1], "pwl_y": [1], "source": ""}',
    '{"op": "a", "axis": "b", "x": [1], "y": [Infinity], "pwl_x": [1], "pwl_y": [1], "source": ""}',
]


@pytest.mark.parametrize("text", DAMAGED_CURVES)
def test_a_damaged_curve_file_is_simulated_again(monkeypatch, tmp_path, text):
    monkeypatch.setenv("AICPP_OPT_CACHE", str(tmp_path))
    geom, topo = CURVE
    stored_model_curve(geom, NOMINAL, topo)
    (path,) = tmp_path.glob("curve-*.json")
    path.write_text(text)
    curve = stored_model_curve(geom, NOMINAL, topo)
    assert np.array_equal(curve.seconds, model_curve(geom, NOMINAL, topo).seconds)
