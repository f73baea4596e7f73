"""Every JSON file the tool reads goes through ``read_json`` and every JSON file it writes
through ``dumps_json`` / ``write_text_atomic``, so hostile input fails the same way everywhere:
one ``InputError`` naming the file, never a traceback, never a silently different answer.

Reading rejects what ``json.loads`` would accept or crash on: duplicate keys (the last would
silently win), NaN / Infinity (not JSON), non-UTF-8 bytes (named by byte offset), nesting deeper
than ``MAX_DEPTH``, files larger than ``MAX_BYTES``, directories and unreadable paths.

Writing turns numpy scalars and arrays, enums and paths into plain JSON, writes non-finite
numbers (an infinite TTFT when a queue saturates) as ``null``, and replaces the target only once
the whole text is on disk (temporary file in the same folder, then rename)."""

from __future__ import annotations

import json
import math
import os
import tempfile
from enum import Enum
from pathlib import Path
from typing import Any

from aicpp_opt.errors import InputError, brief

MAX_BYTES = 64 * 2**20
"""Largest JSON file read (the biggest shipped cost table is under 3 MB)."""
MAX_DEPTH = 32
"""Deepest nesting of objects and lists read (the shipped files nest at most 5 deep)."""
FILE_MODE = 0o644
"""Mode of written files (a temporary file starts private)."""


def _no_duplicates(field: str, name: str):
    def hook(pairs: list[tuple[str, Any]]) -> dict:
        out: dict = {}
        for key, value in pairs:
            if key in out:
                raise InputError(field, f"{name}: duplicate key {key!r}; give each key once")
            out[key] = value
        return out

    return hook


def _reject_constant(field: str, name: str):
    def hook(token: str):
        raise InputError(field, f"{name}: {token} is not a JSON number; write a finite number")

    return hook


def _check_depth(value: Any, field: str, name: str) -> None:
    """Iterative, so a hostile depth cannot exhaust the Python stack here."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise InputError(field, f"{name}: nested deeper than {MAX_DEPTH} levels")
        children = node.values() if isinstance(node, dict) else node
        if isinstance(node, dict | list):
            stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))


def read_bytes(path: str | Path, field: str, limit: int = MAX_BYTES) -> bytes:
    """The bytes of a regular file, or an InputError naming ``field`` and what is wrong."""
    p = Path(path)
    try:
        if p.is_dir():
            raise InputError(field, f"{brief(p)} is a folder; give a file")
        size = p.stat().st_size
        if size > limit:
            raise InputError(field, f"{brief(p)} is {size:,} bytes, above the {limit:,}-byte limit")
        return p.read_bytes()
    except FileNotFoundError:
        raise InputError(field, f"file not found: {brief(p)}") from None
    except OSError as err:
        raise InputError(field, f"cannot read {brief(p)}: {err.strerror or err}") from None


def decode_utf8(data: bytes, field: str, name: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        bad = data[err.start]
        raise InputError(
            field, f"{name} is not UTF-8 (byte {bad:#04x} at offset {err.start}); save it as UTF-8"
        ) from None


def loads_json(text: str, field: str, name: str) -> Any:
    """Decode JSON text with the hardening above; ``name`` says where it came from."""
    try:
        value = json.loads(
            text,
            object_pairs_hook=_no_duplicates(field, name),
            parse_constant=_reject_constant(field, name),
        )
    except json.JSONDecodeError as err:
        raise InputError(
            field, f"{name} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})"
        ) from None
    except RecursionError:
        raise InputError(field, f"{name}: nested deeper than {MAX_DEPTH} levels") from None
    _check_depth(value, field, name)
    return value


def read_json(path: str | Path, field: str) -> Any:
    """Decode a JSON file; anything wrong with it is one InputError naming ``field``."""
    data = read_bytes(path, field)
    name = brief(Path(path))
    return loads_json(decode_utf8(data, field, name), field, name)


def plain(value: Any) -> Any:
    """``value`` with numpy scalars and arrays, enums, paths and tuples made plain JSON types
    and non-finite floats made None."""
    if isinstance(value, Enum):
        value = value.value
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):
        value = value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(plain(k)): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    if value is None or isinstance(value, str | int | bool):
        return value
    raise TypeError(f"{type(value).__name__} has no JSON form")


def dumps_json(value: Any, indent: int | None = 2, sort_keys: bool = False) -> str:
    """The one JSON serialiser of every ``--json`` output (strict JSON, trailing newline)."""
    return json.dumps(plain(value), indent=indent, allow_nan=False, sort_keys=sort_keys) + "\n"


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename, so
    a reader (or a failed run) never sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, value: Any) -> None:
    write_text_atomic(path, dumps_json(value))
