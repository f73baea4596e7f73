"""A link_model.json under a user's --tables root is read like every cost table: a file that is
not what ``calibrate comm`` writes is one InputError naming the field, never a crash or a
silently different price; the shipped files read back and write out byte for byte."""

from __future__ import annotations

import json
import math

import pytest

from aicpp_opt.costs import linkmodel
from aicpp_opt.costs.store import COST_TABLES_DIR
from aicpp_opt.errors import InputError

SHIPPED = COST_TABLES_DIR / "h200_sxm" / linkmodel.FILE


def family() -> dict:
    doc = json.loads(SHIPPED.read_text())
    return next(iter(doc["families"].values()))


BAD = {
    "not an object": ([], "families"),
    "no families": ({"schema": 1}, "families"),
    "families a list": ({"families": []}, "families"),
    "family a number": ({"families": {"all_reduce/intra": 1}}, "families.all_reduce/intra"),
    "field missing": (
        {"families": {"f": {k: v for k, v in family().items() if k != "hop"}}},
        "families.f",
    ),
    "field unknown": ({"families": {"f": family() | {"gain": 2}}}, "families.f"),
    "efficiency zero": ({"families": {"f": family() | {"efficiency": 0}}}, "families.f.efficiency"),
    "negative overhead": ({"families": {"f": family() | {"alpha": -1e-6}}}, "families.f.alpha"),
    "hop a string": ({"families": {"f": family() | {"hop": "1us"}}}, "families.f.hop"),
    "points fractional": ({"families": {"f": family() | {"points": 2.5}}}, "families.f.points"),
    "source a number": ({"families": {"f": family() | {"source": 3}}}, "families.f.source"),
}


@pytest.mark.parametrize(("doc", "field"), BAD.values(), ids=BAD.keys())
def test_a_bad_link_model_names_the_field(tmp_path, doc, field):
    path = tmp_path / linkmodel.FILE
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError) as err:
        linkmodel.read(path)
    assert err.value.field == f"{tmp_path.name}/link_model.json.{field}"


def test_non_json_numbers_are_refused(tmp_path):
    path = tmp_path / linkmodel.FILE
    path.write_text(
        json.dumps({"families": {"f": family()}}).replace('"alpha": ', '"alpha": NaN, "x": ')
    )
    with pytest.raises(InputError, match="NaN is not a JSON number"):
        linkmodel.read(path)


def test_the_shipped_file_reads_back_and_writes_out_unchanged(tmp_path):
    fits = linkmodel.read(SHIPPED)
    assert fits and all(0 < f.efficiency <= 10 and math.isfinite(f.alpha) for f in fits.values())
    linkmodel.write(tmp_path / linkmodel.FILE, fits)
    assert (tmp_path / linkmodel.FILE).read_text() == SHIPPED.read_text()
