"""Benchmarks on standard sets: ``hcd eval`` and ``hcd bench``."""
