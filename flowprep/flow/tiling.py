"""Split frames into overlapping tiles and blend per-tile flows back, so large frames fit in memory.

Tiles of (th, tw) pixels are laid out so they cover the frame exactly, with at
least `overlap` pixels shared between neighbours. Blending weights fall off
linearly towards each tile's inner edges (never to zero), so seams vanish and a
pixel covered by a single tile keeps that tile's value.
"""

from __future__ import annotations

import numpy as np


def _starts(size: int, tile: int, overlap: int) -> list[int]:
    if tile >= size:
        return [0]
    n = int(np.ceil((size - overlap) / (tile - overlap)))
    return [int(round(i * (size - tile) / (n - 1))) for i in range(n)] if n > 1 else [0]


def tile_boxes(height: int, width: int, tile: tuple[int, int], overlap: int = 64) -> list[tuple[int, int, int, int]]:
    """(y0, y1, x0, x1) boxes of at most `tile` = (th, tw) pixels covering a height x width frame."""
    th, tw = min(tile[0], height), min(tile[1], width)
    if overlap >= min(th, tw) and (th < height or tw < width):
        raise ValueError(f"overlap {overlap} must be smaller than the tile {th}x{tw}")
    return [(y, y + th, x, x + tw) for y in _starts(height, th, overlap) for x in _starts(width, tw, overlap)]


def blend_weights(box: tuple[int, int, int, int], height: int, width: int, ramp: int) -> np.ndarray:
    """(h, w) weights of one tile: 1 inside, falling linearly to 1/(ramp+1) at edges shared with other tiles."""
    y0, y1, x0, x1 = box

    def axis(lo, hi, size):
        n = hi - lo
        w = np.ones(n, np.float32)
        r = np.arange(1, n + 1, dtype=np.float32) / (ramp + 1)
        if lo > 0:  # an inner edge: another tile continues there
            w = np.minimum(w, np.minimum(r, 1))
        if hi < size:
            w = np.minimum(w, np.minimum(r[::-1], 1))
        return w

    return axis(y0, y1, height)[:, None] * axis(x0, x1, width)[None, :]


def blend(tiles, boxes, height: int, width: int, ramp: int):
    """Weighted average of per-tile (h, w, C) torch tensors placed at `boxes` -> (height, width, C) float32, on
    the tiles' device (an engine's GPU: only the blended flow crosses to the CPU)."""
    import torch

    device = tiles[0].device
    out = torch.zeros((height, width, tiles[0].shape[-1]), dtype=torch.float32, device=device)
    total = torch.zeros((height, width, 1), dtype=torch.float32, device=device)
    for tile, box in zip(tiles, boxes):
        y0, y1, x0, x1 = box
        w = torch.from_numpy(blend_weights(box, height, width, ramp)[..., None]).to(device)
        out[y0:y1, x0:x1] += tile.float() * w
        total[y0:y1, x0:x1] += w
    return out / total
