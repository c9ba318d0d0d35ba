"""The distributed batch pipeline: Ray Data from object storage through HCD actor pools to LR + Parquet."""

from .runner import RunSummary, build_dataset, final_rows, plan, read_metrics, run_pipeline
from .schema import METRICS_SCHEMA
from .settings import PipelineSettings
from .sources import InputItem, list_inputs

__all__ = [
    "PipelineSettings",
    "RunSummary",
    "InputItem",
    "METRICS_SCHEMA",
    "list_inputs",
    "plan",
    "build_dataset",
    "run_pipeline",
    "read_metrics",
    "final_rows",
]
