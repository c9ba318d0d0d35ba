"""JSON for numbers that JSON cannot hold: a perfect reconstruction's PSNR is infinite.

Convention (docs/quality.md, "Infinite and undefined values"): ``inf`` / ``-inf`` / NaN are written as the strings
``"inf"`` / ``"-inf"`` / ``"nan"``, which ``float()`` reads back; standard JSON parsers accept the files.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["json_float", "json_safe", "dumps"]


def json_float(v: float) -> float | str:
    """``v``, or ``"inf"`` / ``"-inf"`` / ``"nan"`` when it is not finite."""
    return v if math.isfinite(v) else str(v)


def json_safe(obj: Any) -> Any:  # noqa: ANN401 - any JSON-able structure
    """``obj`` with every non-finite float replaced by its string (dicts, lists and tuples walked)."""
    if isinstance(obj, float):
        return json_float(obj)
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


def dumps(obj: Any, **kw: Any) -> str:  # noqa: ANN401
    """``json.dumps`` of :func:`json_safe` (``allow_nan=False``: a missed case fails loudly)."""
    return json.dumps(json_safe(obj), allow_nan=False, **kw)
