"""Image normalisation: ImageNet mean and standard deviation of RGB 0..255 pixels, as every recipe's
backbone was pretrained with (and the reference normalised).

    normalise(rgb (H, W, 3) uint8)              -> (3, H, W) float32
    normalise_batch(images (..., H, W, 3) uint8) -> (..., 3, H, W) float32, on the images' device
    denormalise / renormalise: to 0..1 RGB and back, for augmentations defined on intensities
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

IMAGENET_MEAN = np.array([123.675, 116.28, 103.53], np.float32)  # RGB, 0..255
IMAGENET_STD = np.array([58.395, 57.12, 57.375], np.float32)


def normalise(rgb: np.ndarray) -> torch.Tensor:
    """(h, w, 3) uint8 RGB -> (3, h, w) float32, ImageNet mean/std."""
    return torch.from_numpy(((rgb.astype(np.float32) - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1).copy())


def normalise_batch(images: torch.Tensor) -> torch.Tensor:
    """(..., h, w, 3) uint8 RGB -> (..., 3, h, w) float32, ImageNet mean/std, on `images`' device: the loader
    delivers frames as they are stored (a quarter of the bytes, no float work on the CPU) and the training step
    normalises them where it runs; the same arithmetic as `normalise`, so the same values."""
    mean, std = _on_device(images.device)
    return ((images.float() - mean) / std).movedim(-1, -3).contiguous()


@lru_cache(maxsize=None)
def _on_device(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    # made once per device: a blocking host-to-device copy per step otherwise (never written to)
    return torch.from_numpy(IMAGENET_MEAN).to(device), torch.from_numpy(IMAGENET_STD).to(device)


def unit_mean_std(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(3, 1, 1) mean and std on 0..1 intensities, on `device`: x01 = x * std + mean (made once per device)."""
    mean, std = _on_device(torch.device(device))
    return (mean / 255)[:, None, None], (std / 255)[:, None, None]
