"""``python -m hcd_pipeline.cli``: the ``hcd`` command (what ``torchrun --module`` and cluster job entrypoints run)."""

from hcd_pipeline.cli import main

main()
