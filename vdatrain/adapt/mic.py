"""MIC's masked images: zero random blocks (in normalised space, i.e. the mean colour).

The image is cut into a grid of cells, each kept with probability 1 - mask_ratio (0.3). Grid, by
`adapt.mic.grid`: "round" (the reference's `BlockMaskGenerator`: round(side / block) cells per side,
upsampled to the image by nearest neighbour, so a 720 side has 11 cells of 65.5 px), or "ceil"
(ceil(side / block) cells of exactly `block` px, the last one cut by the border).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def block_mask(batch: int, size: tuple[int, int], block: int, mask_ratio: float, device=None,
               generator: torch.Generator | None = None, grid: str = "round") -> torch.Tensor:
    """(B, 1, H, W) float32: 1 where the image is kept, 0 in masked blocks."""
    h, w = size
    cells = (max(round(h / block), 1), max(round(w / block), 1)) if grid == "round" else \
        (math.ceil(h / block), math.ceil(w / block))
    # drawn on `device` with its generator (the loop seeds it per iteration): no host mask copied every step
    keep = (torch.rand((batch, 1, *cells), generator=generator, device=device) > mask_ratio).float()
    if grid == "round":
        return F.interpolate(keep, size=(h, w), mode="nearest")
    return keep.repeat_interleave(block, 2).repeat_interleave(block, 3)[:, :, :h, :w]
