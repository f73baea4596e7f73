"""The on-disk cache folder and its files: what a run computed once and another run (or a
worker process of the same run) reuses, the solver's settled capacities (``search.cache``) and
the link model's simulated curves (``costs.comm``). ``AICPP_OPT_CACHE`` sets the folder
(default ``~/.cache/aicpp-opt``); ``AICPP_OPT_CACHE=off`` disables it. Files are named by hex
digests of what they were computed from, including the source of the code that computed them,
and written through ``jsonio.write_text_atomic``; they are JSON with infinities (an unservable
shape's service time), so they are read here, not by the strict reader: a file that does not
read back (not JSON, NaN, not an object) is a miss, and its reader recomputes what a file of
the wrong shape holds."""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path

import aicpp_opt
from aicpp_opt.jsonio import write_text_atomic


def cache_dir() -> Path | None:
    env = os.environ.get("AICPP_OPT_CACHE", "")
    if env.lower() == "off":
        return None
    return Path(env).expanduser() if env else Path.home() / ".cache" / "aicpp-opt"


@lru_cache(maxsize=8)
def code_version(parts: tuple[str, ...]) -> str:
    """A digest of the source of the packages ``parts`` (editing one changes it)."""
    h = hashlib.sha256()
    root = Path(aicpp_opt.__file__).parent
    for part in parts:
        for path in sorted((root / part).rglob("*.py")):
            h.update(path.name.encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def digest(parts: dict) -> str:
    """A file name for what was computed from ``parts`` (JSON, other values by repr)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=repr).encode()).hexdigest()


def load(name: str) -> dict | None:
    folder = cache_dir()
    if folder is None:
        return None
    try:
        data = json.loads((folder / f"{name}.json").read_text(), parse_constant=_no_nan)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _no_nan(token: str) -> float:
    if token == "NaN":
        raise ValueError("NaN in a cache file")
    return float(token)


def store(name: str, data: dict) -> None:
    """Write atomically (a concurrent reader sees the old file or the new, never half); a
    folder that cannot be written only costs the next run the recomputation."""
    folder = cache_dir()
    if folder is None:
        return
    try:
        write_text_atomic(folder / f"{name}.json", json.dumps(data))
    except OSError:
        return
