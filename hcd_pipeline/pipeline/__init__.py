"""The distributed batch pipeline: Ray Data from object storage through HCD actor pools to LR + Parquet."""

from .runner import RunSummary, build_dataset, final_rows, plan_run, read_metrics, run_pipeline
from .schema import METRICS_SCHEMA, SCHEMA_VERSION
from .settings import PipelineSettings
from .sources import InputItem, iter_inputs, list_inputs

__all__ = [
    "PipelineSettings",
    "RunSummary",
    "InputItem",
    "METRICS_SCHEMA",
    "SCHEMA_VERSION",
    "list_inputs",
    "iter_inputs",
    "plan_run",
    "build_dataset",
    "run_pipeline",
    "read_metrics",
    "final_rows",
]
