"""Every file of the bad-input corpus gets one error line naming the field, and exit code 2."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from aicpp_opt.cli import main

CORPUS = Path(__file__).parent / "bad_inputs"
EXPECTED: dict[str, str] = json.loads((CORPUS / "expected.json").read_text())


def _args(name: str) -> list[str]:
    if name.startswith("instance_"):
        return ["evaluate", str(CORPUS / name), str(CORPUS / "good_plan.json")]
    return ["evaluate", "small_h200_16", str(CORPUS / name)]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_input_is_one_line_naming_the_field(name):
    result = CliRunner().invoke(main, _args(name))
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith(f"error: {EXPECTED[name]}:"), lines[0]


def test_corpus_lists_every_file():
    files = {p.name for p in CORPUS.glob("*.json")} - {
        "expected.json",
        "good_plan.json",
        "good_afd_plan.json",
    }
    assert files == set(EXPECTED)
