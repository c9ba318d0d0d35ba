"""Benchmarks: scripts that measure (each writes JSON under docs/eval/ with the command that made it) and the docs
tools that render results.md from that JSON (:mod:`.bench`, :mod:`.sections`, :mod:`.plots`). Run from the
repository root, as files (``python benchmarks/X.py``) or as modules (``python -m benchmarks.X``)."""
