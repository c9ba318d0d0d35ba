"""Training data: images decoded once, random crops with the original recipe's flips and rotations, JPEG draws."""

from __future__ import annotations

from pathlib import Path

import torch

from hcd_pipeline.io.datasets import resolve_dataset
from hcd_pipeline.io.images import list_images, read_image
from hcd_pipeline.jpeg.simulate import jpeg_sim
from hcd_pipeline.training.config import TrainConfig


def load_training_images(folder: str | Path, min_side: int) -> list[torch.Tensor]:
    """Decode every RGB image of ``folder`` (a folder, or a set name: :func:`~hcd_pipeline.io.datasets.resolve_dataset`)
    into a uint8 (3, H, W) tensor, in sorted name order."""
    images = []
    for path in list_images(resolve_dataset(folder)):
        img = read_image(path)
        if img.pixels.shape[0] != 3 or min(img.pixels.shape[-2:]) < min_side:
            continue
        images.append(torch.round(img.pixels * 255).to(torch.uint8))
    if not images:
        raise ValueError(f"no RGB training images of at least {min_side} px found in {folder}")
    return images


def sample_batch(images: list[torch.Tensor], patch: int, batch: int, gen: torch.Generator) -> torch.Tensor:
    """Random crops with random flips and 90-degree rotations -> (batch, 3, patch, patch) in [0, 1]."""
    out = []
    for _ in range(batch):
        img = images[int(torch.randint(len(images), (1,), generator=gen))]
        h, w = img.shape[-2:]
        top = int(torch.randint(h - patch + 1, (1,), generator=gen))
        left = int(torch.randint(w - patch + 1, (1,), generator=gen))
        crop = img[:, top : top + patch, left : left + patch]
        aug = torch.randint(8, (1,), generator=gen).item()
        if aug & 1:
            crop = crop.flip(-1)
        crop = torch.rot90(crop, int(aug) >> 1, (-2, -1))
        out.append(crop)
    return torch.stack(out).float() / 255.0


def codec_batch(lr: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The LR batch (B, 3, h, w), 8-bit levels, as the upscaler would read it back from the codec of ``cfg``,
    and the (B,) mask of the crops that went through the codec (the others skip it, as a PNG would).

    Draws one quality per crop and which crops skip the codec from ``gen``."""
    b = lr.shape[0]
    qualities = torch.randint(cfg.codec_q_min, cfg.codec_q_max + 1, (b,), generator=gen).tolist()
    coded = (torch.rand(b, generator=gen) >= cfg.codec_clean).to(lr.device)
    return torch.where(coded[:, None, None, None], jpeg_sim(lr, qualities), lr), coded
