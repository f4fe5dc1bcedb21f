"""Which flow vectors can be trusted: in frame, forward-backward consistent, off the ego vehicle.

All functions take flow as (H, W, 2) float pixels, (u, v) = (x, y), from frame a
to frame b, and return (H, W) bool masks (True = valid).
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
