"""The ``hcd`` command: parsing and printing only; the work lives in the layers below.

:mod:`.group` (the group, ``--quiet`` / ``--verbose``, one-line errors), :mod:`.options` (shared options),
:mod:`.images`, :mod:`.evaluate`, :mod:`.training`, :mod:`.jobs` (the commands, registered on import).
"""

from hcd_pipeline.cli import evaluate, images, jobs, training  # noqa: F401 - importing registers the commands
from hcd_pipeline.cli.group import main

__all__ = ["main"]
