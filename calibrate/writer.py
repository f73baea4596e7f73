"""Byte-stable JSON for cost tables: sorted keys, floats at a fixed number of significant
digits, one line per series so diffs stay readable."""

from __future__ import annotations

import json
from pathlib import Path

from aicpp_opt.jsonio import write_text_atomic

SIG_DIGITS = 6


def rounded(obj):
    """Copy of `obj` with every float cut to SIG_DIGITS significant digits."""
    if isinstance(obj, float):
        return float(f"{obj:.{SIG_DIGITS}g}")
    if isinstance(obj, dict):
        return {k: rounded(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [rounded(v) for v in obj]
    return obj


def dumps_table(doc: dict) -> str:
    """Header fields indented, then the series one per line."""
    doc = rounded(doc)
    head = {k: v for k, v in doc.items() if k != "series"}
    text = json.dumps(head, indent=2, sort_keys=True, allow_nan=False)
    lines = [json.dumps(s, sort_keys=True, allow_nan=False) for s in doc.get("series", [])]
    body = ",\n    ".join(lines)
    return text[:-2] + f',\n  "series": [\n    {body}\n  ]\n}}\n'


def dumps_plain(doc: dict) -> str:
    return json.dumps(rounded(doc), indent=2, sort_keys=True, allow_nan=False) + "\n"


def write_all(files: dict[Path, str]) -> None:
    """Write every file whose bytes differ (keeping mtimes, and so `git status`, quiet), each
    through a temporary file and a rename; callers build every text first, so a rejected run
    writes nothing."""
    for path, text in files.items():
        if not path.is_file() or path.read_text() != text:
            write_text_atomic(path, text)
