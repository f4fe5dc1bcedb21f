"""MIC's masked images: zero random square blocks (in normalised space, i.e. the mean colour).

Each `block` x `block` cell is kept with probability 1 - mask_ratio (0.3).
"""

from __future__ import annotations

import math

import torch


def block_mask(batch: int, size: tuple[int, int], block: int, mask_ratio: float, device=None,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, 1, H, W) float32: 1 where the image is kept, 0 in masked blocks."""
    h, w = size
    # drawn on `device` with its generator (the loop seeds it per iteration): no host mask copied every step
    cells = torch.rand((batch, 1, math.ceil(h / block), math.ceil(w / block)), generator=generator,
                       device=device) > mask_ratio
    return cells.float().repeat_interleave(block, 2).repeat_interleave(block, 3)[:, :, :h, :w]
