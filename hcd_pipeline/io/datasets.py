"""Image sets by name: ``Set5`` means ``<data root>/Set5/HR``.

Evaluation and training name their sets (``Set5``, ``BSD200``) rather than carry a path, so that a command works
from any folder and on any machine that has the data. The data root is ``$HCD_DATA_ROOT`` when set; otherwise the
first of ``./shared/data`` and ``../shared/data`` (from the working directory) that exists, the layout of a source
checkout beside its data (README, "Commands").
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DATA_ROOT_ENV", "data_roots", "resolve_dataset"]

DATA_ROOT_ENV = "HCD_DATA_ROOT"
"""Environment variable naming the folder that holds the image sets (``<root>/<NAME>/HR``)."""


def data_roots() -> list[Path]:
    """The folders searched for a set name, in order."""
    roots = [Path(os.environ[DATA_ROOT_ENV])] if os.environ.get(DATA_ROOT_ENV) else []
    cwd = Path.cwd()
    return roots + [cwd / "shared" / "data", cwd.parent / "shared" / "data"]


def resolve_dataset(name_or_path: str | Path) -> Path:
    """A folder path as it is, or a set name looked up as ``<data root>/NAME/HR`` (:func:`data_roots`).

    Raises FileNotFoundError naming the roots searched when it is neither."""
    p = Path(name_or_path)
    if p.is_dir():
        return p
    roots = data_roots()
    for root in roots:
        cand = root / str(name_or_path) / "HR"
        if cand.is_dir():
            return cand
    raise FileNotFoundError(
        f"{name_or_path}: neither a folder nor a set under {', '.join(map(str, roots))} (set ${DATA_ROOT_ENV} to the data folder)"
    )
