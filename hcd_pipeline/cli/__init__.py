"""The ``hcd`` command: parsing and printing only; the work lives in the layers below."""

from hcd_pipeline.cli.app import main

__all__ = ["main"]
