"""Shared fixtures: paths to the reference data and small test images."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SAMPLES = ROOT / "samples"


@pytest.fixture(scope="session")
def shared() -> Path:
    if not (SHARED / "reference" / "matlab_imresize.json").is_file():
        pytest.fail(f"reference data not found at {SHARED} (tests expect ../shared beside the checkout)")
    return SHARED


@pytest.fixture()
def rng() -> torch.Generator:
    return torch.Generator().manual_seed(1234)
