"""Byte-stable JSON for cost tables: sorted keys, floats at a fixed number of significant
digits, one line per series so diffs stay readable."""

from __future__ import annotations

import json
from pathlib import Path

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
    text = json.dumps(head, indent=2, sort_keys=True)
    lines = [json.dumps(s, sort_keys=True) for s in doc.get("series", [])]
    body = ",\n    ".join(lines)
    return text[:-2] + f',\n  "series": [\n    {body}\n  ]\n}}\n'


def dumps_plain(doc: dict) -> str:
    return json.dumps(rounded(doc), indent=2, sort_keys=True) + "\n"


def write_if_changed(path: Path, text: str) -> None:
    """Write only when the bytes differ (keeps mtimes, and so `git status`, quiet)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
