"""Shared fixtures: paths to the reference data and small test images."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SAMPLES = ROOT / "samples"

# Dummy S3 credentials for the moto server, set before Ray starts so that its workers inherit them.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
# Ray heads started by the tests use token authentication (Ray's default); clients must know before import.
os.environ.setdefault("RAY_AUTH_MODE", "token")


@pytest.fixture(scope="session")
def shared() -> Path:
    if not (SHARED / "reference" / "matlab_imresize.json").is_file():
        pytest.fail(f"reference data not found at {SHARED} (tests expect ../shared beside the checkout)")
    return SHARED


@pytest.fixture()
def rng() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


@pytest.fixture(scope="session")
def s3_server():
    from tests.services import S3Server

    server = S3Server()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ray_local():
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def small_images(tmp_path_factory) -> Path:
    """Four small crops of the bundled samples (RGB, gray, RGBA odd-size) in a folder with a subfolder."""
    from PIL import Image

    root = tmp_path_factory.mktemp("small")
    (root / "sub").mkdir()
    Image.open(SAMPLES / "astronaut_crop.png").crop((0, 0, 40, 36)).save(root / "a.png")
    Image.open(SAMPLES / "coffee_crop.png").crop((10, 10, 42, 42)).save(root / "sub" / "b.jpg", quality=95)
    Image.open(SAMPLES / "camera_crop_gray.png").crop((0, 0, 34, 30)).save(root / "sub" / "c.png")
    Image.open(SAMPLES / "chelsea_crop_alpha.png").crop((0, 0, 33, 31)).save(root / "d.png")
    return root
