"""Where data is read and written, and the checks that keep writes where they were asked.

Shipped data (``cost_tables/``, ``models/``, ``instances/``) is found in the installed
package (``aicpp_opt/_data/``, filled by the wheel build, see ``setup.py``) or else in the
checkout. Cost tables are looked up along a search path: ``--tables DIR``, then the folder in
``$AICPP_TABLES``, then the shipped tables; the first root holding ``<system>/system.json``
serves that system, so a user's own tables can live anywhere and sit beside the shipped ones.

Every name that becomes part of a path (system, backend, model, instance) must be a plain
file name (``safe_name``), and output paths are checked before any work starts."""

from __future__ import annotations

import os
import re
from pathlib import Path

from aicpp_opt import PROJECT_ROOT
from aicpp_opt.errors import InputError, brief

PACKAGE_DATA = Path(__file__).resolve().parent / "_data"
"""Shipped data inside an installed wheel (absent in a checkout)."""
DATA_KINDS = ("cost_tables", "models", "instances")
TABLES_ENV = "AICPP_TABLES"
"""Environment variable naming a folder of cost tables read before the shipped ones."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")
_user_tables: Path | None = None


def data_dir(kind: str) -> Path:
    """The shipped ``kind`` folder: the installed package's copy, else the checkout's."""
    packaged = PACKAGE_DATA / kind
    return packaged if packaged.is_dir() else PROJECT_ROOT / kind


def _folder(path: Path, field: str) -> Path:
    try:
        ok = path.is_dir()
    except OSError as err:
        raise InputError(field, f"cannot read {brief(path)}: {err.strerror}") from None
    if not ok:
        raise InputError(field, f"{brief(path)} is not a folder; give a cost-table root")
    return path


def use_tables(folder: Path | None) -> None:
    """Read cost tables from ``folder`` first (``--tables``); None: only the env var and the
    shipped tables."""
    global _user_tables
    _user_tables = None if folder is None else _folder(Path(folder), "--tables")


def table_roots() -> list[Path]:
    """Cost-table roots in search order, without duplicates."""
    roots = [] if _user_tables is None else [_user_tables]
    env = os.environ.get(TABLES_ENV)
    if env:
        roots.append(_folder(Path(env), TABLES_ENV))
    roots.append(data_dir("cost_tables"))
    seen: dict[Path, None] = {}
    for r in roots:
        seen.setdefault(r.resolve(), None)
    return list(seen)


def safe_name(value: object, field: str) -> str:
    """A name that becomes a file or folder name: 1-100 letters, digits, '.', '_', '+', '-',
    starting with a letter or digit (so never '..', never a path)."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise InputError(
            field,
            f"{brief(value)} cannot be a file name: use 1-100 letters, digits, '.', '_', '+' "
            "or '-', starting with a letter or digit",
        )
    return value


def safe_name_or_none(value: str) -> str | None:
    """``value`` when it is a plain file name (see ``safe_name``), else None."""
    return value if _NAME.fullmatch(value) else None


def inside(root: Path, *names: str, field: str) -> Path:
    """``root / names...`` after checking every name, and that the result (links followed)
    stays inside ``root``."""
    path = root.joinpath(*(safe_name(n, field) for n in names))
    if not path.resolve().is_relative_to(root.resolve()):
        raise InputError(field, f"{path} leaves {root} (a link points outside); pick another name")
    return path


def output_file(path: Path | None, option: str) -> None:
    """Fail before any work when ``path`` cannot be written: it is a folder, its folder does
    not exist, or either is not writable."""
    if path is None:
        return
    try:
        if path.is_dir():
            raise InputError(option, f"{brief(path)} is a folder; give a file name")
        parent = path.parent
        if not parent.is_dir():
            raise InputError(option, f"folder {brief(parent)} does not exist; create it")
        if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
            raise InputError(option, f"{brief(path)} is not writable")
    except OSError as err:
        raise InputError(option, f"cannot use {brief(path)}: {err.strerror}") from None


def output_dir(path: Path, option: str) -> None:
    """Fail before any work when ``path`` cannot be a writable folder: it is a file, or it does
    not exist and its parent folder does not either."""
    try:
        if path.exists() and not path.is_dir():
            raise InputError(option, f"{brief(path)} is a file; give a folder")
        target = path if path.exists() else path.parent
        if not target.is_dir():
            raise InputError(option, f"folder {brief(target)} does not exist; create it")
        if not os.access(target, os.W_OK):
            raise InputError(option, f"{brief(target)} is not writable")
    except OSError as err:
        raise InputError(option, f"cannot use {brief(path)}: {err.strerror}") from None
