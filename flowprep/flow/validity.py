"""Which flow vectors can be trusted: in frame, forward-backward consistent, off the ego vehicle.

All functions take flow as (H, W, 2) float pixels, (u, v) = (x, y), from frame a
to frame b, and return (H, W) bool masks (True = valid). `validity_on_device` computes
the same masks for batches of torch tensors where they are (a GPU engine's flows), with
torch's bilinear sampling (OpenCV's remap quantises its weights to 1/32: the masks differ
only where the consistency test is within that rounding of its threshold).
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np


@lru_cache(maxsize=4)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(v, u) float32 pixel coordinates, built once per frame size (read-only)."""
    v, u = np.mgrid[0:h, 0:w].astype(np.float32)
    v.flags.writeable = u.flags.writeable = False
    return v, u


def sample(field: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """field (H, W, C) of frame b read at p + flow(p), bilinear: what frame a's pixels see in b."""
    v, u = _grid(*flow.shape[:2])
    return cv2.remap(field.astype(np.float32), u + flow[..., 0], v + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE).reshape(field.shape)


def in_frame(flow: np.ndarray) -> np.ndarray:
    """The target p + flow(p) lies inside the image (pixel centres 0..W-1, 0..H-1)."""
    h, w = flow.shape[:2]
    v, u = _grid(h, w)
    x, y = u + flow[..., 0], v + flow[..., 1]
    return (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)


def consistent(forward: np.ndarray, backward: np.ndarray, alpha: float = 0.01, beta: float = 0.5) -> np.ndarray:
    """Forward-backward check (Sundaram et al. 2010): following a -> b then b -> a returns near p.

    |F(p) + B(p + F(p))|^2 < alpha (|F(p)|^2 + |B(p + F(p))|^2) + beta; pixels that fail are
    (mostly) occluded in b. `backward` is the flow from b to a.
    """
    back = sample(backward, forward)
    diff = np.square(forward + back).sum(-1)
    scale = np.square(forward).sum(-1) + np.square(back).sum(-1)
    return diff < alpha * scale + beta


def off_ego(flow: np.ndarray, ego_row: float | None) -> np.ndarray:
    """Neither the pixel nor its target lies on the ego vehicle (rows from `ego_row` * H down)."""
    h, w = flow.shape[:2]
    if ego_row is None:
        return np.ones((h, w), bool)
    limit = ego_row * h
    v = _grid(h, w)[0]
    return (v < limit) & (v + flow[..., 1] < limit)


def validity(forward: np.ndarray, backward: np.ndarray | None = None, ego_row: float | None = None) -> np.ndarray:
    mask = in_frame(forward) & off_ego(forward, ego_row)
    if backward is not None:
        mask &= consistent(forward, backward)
    return mask


def validity_on_device(forward, backward=None, ego_row: float | None = None):
    """(B, H, W, 2) torch flows a -> b (and b -> a) -> (B, H, W) bool, as `validity` computes per pair."""
    import torch
    import torch.nn.functional as F

    b, h, w, _ = forward.shape
    v, u = torch.meshgrid(torch.arange(h, device=forward.device, dtype=torch.float32),
                          torch.arange(w, device=forward.device, dtype=torch.float32), indexing="ij")
    x, y = u + forward[..., 0], v + forward[..., 1]
    mask = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    if ego_row is not None:
        limit = ego_row * h
        mask &= (v < limit) & (y < limit)
    if backward is not None:  # Sundaram et al.'s forward-backward check, as `consistent`
        grid = torch.stack([x / (w - 1) * 2 - 1, y / (h - 1) * 2 - 1], -1)
        back = F.grid_sample(backward.permute(0, 3, 1, 2).float(), grid, mode="bilinear", padding_mode="border",
                             align_corners=True).permute(0, 2, 3, 1)
        diff = (forward + back).square().sum(-1)
        scale = forward.square().sum(-1) + back.square().sum(-1)
        mask &= diff < 0.01 * scale + 0.5
    return mask
