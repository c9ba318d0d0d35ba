"""The distributed batch pipeline: Ray Data from object storage through HCD actor pools to LR + Parquet.

Names load on first use, so that the model stage's core (:mod:`.model_stage`) imports without Ray, pyarrow or
fsspec (``benchmarks/gpu_check.py`` runs it on a bare GPU machine).
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "PipelineSettings": "settings",
    "RunSummary": "runner",
    "InputItem": "sources",
    "METRICS_SCHEMA": "schema",
    "SCHEMA_VERSION": "schema",
    "list_inputs": "sources",
    "iter_inputs": "sources",
    "plan_run": "runner",
    "build_dataset": "runner",
    "run_pipeline": "runner",
    "read_metrics": "runner",
    "final_rows": "runner",
}
__all__ = list(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
