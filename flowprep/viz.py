"""Pictures for people, pixel by pixel: colourised labels and flow in the standard colour wheel.

Figures with legends, keys and axes (matplotlib) are built from these in `flowprep.figures`.
"""

from __future__ import annotations

import cv2
import numpy as np

from flowprep.manifest import load_classes


def write_picture(path, rgb: np.ndarray) -> None:
    """Write (H, W, 3) uint8 RGB or (H, W) grey as an image file; OSError naming the file when OpenCV cannot
    (it reports an unwritable folder only by returning False)."""
    img = rgb[..., ::-1] if rgb.ndim == 3 else rgb
    if not cv2.imwrite(str(path), np.ascontiguousarray(img)):
        raise OSError(f"{path}: could not be written (folder missing or not writable, or no image extension)")


def colourise(train_ids: np.ndarray) -> np.ndarray:
    """(H, W) trainIds -> (H, W, 3) uint8 RGB in the Cityscapes palette; ignore (255) is black."""
    palette = np.zeros((256, 3), np.uint8)
    classes = load_classes()
    palette[: len(classes.palette)] = classes.palette
    return palette[train_ids]


def colour_wheel() -> np.ndarray:
    """(55, 3) float RGB in 0..1: the Middlebury flow colour wheel (Baker et al. 2011), the one researchers read
    (ptlflow's `flow_to_rgb`, flow_vis): red, yellow, green, cyan, blue, magenta hues in 15/6/4/11/13/6 steps."""
    segments = [(15, (1, 0, 0), (1, 1, 0)), (6, (1, 1, 0), (0, 1, 0)), (4, (0, 1, 0), (0, 1, 1)),
                (11, (0, 1, 1), (0, 0, 1)), (13, (0, 0, 1), (1, 0, 1)), (6, (1, 0, 1), (1, 0, 0))]
    rows = []
    for n, a, b in segments:
        t = np.arange(n)[:, None] / n
        rows.append((1 - t) * np.array(a, float) + t * np.array(b, float))
    return np.concatenate(rows)


def flow_scale(flow: np.ndarray, valid: np.ndarray | None = None) -> float:
    """The radius (pixels) that maps to the wheel's rim: the largest valid vector's length."""
    mag = np.linalg.norm(flow.astype(np.float32), axis=-1)
    ok = np.isfinite(mag) if valid is None else valid.astype(bool) & np.isfinite(mag)
    return max(float(mag[ok].max()) if ok.any() else 1.0, 1e-6)


def flow_to_rgb(flow: np.ndarray, valid: np.ndarray | None = None, max_norm: float | None = None) -> np.ndarray:
    """(H, W, 2) flow in pixels -> (H, W, 3) uint8 RGB in the standard colour wheel, as ptlflow's `flow_to_rgb`
    draws it: hue = direction (right red, down yellow-orange, left cyan, up blue-violet), saturation = length
    relative to `max_norm` (default `flow_scale`: the largest valid vector); longer vectors are darkened;
    zero flow is white; invalid pixels are black."""
    u, v = flow[..., 0].astype(np.float64), flow[..., 1].astype(np.float64)
    ok = np.isfinite(u) & np.isfinite(v) if valid is None else valid.astype(bool) & np.isfinite(u) & np.isfinite(v)
    scale = max_norm or flow_scale(flow, ok)
    u, v = np.where(ok, u, 0) / scale, np.where(ok, v, 0) / scale
    wheel = np.vstack([colour_wheel(), colour_wheel()[:1]]) * 255  # cyclic: red again at the end
    n = len(wheel) - 1
    rad = np.hypot(u, v)
    angle = np.arctan2(v, u)
    angle = np.where(angle < 0, angle + 2 * np.pi, angle) * ((n - 1) / (2 * np.pi))
    lo, frac = np.floor(angle).astype(int), (angle - np.floor(angle))[..., None]
    hue = wheel[lo] * (1 - frac) + wheel[np.ceil(angle).astype(int)] * frac
    col = np.where((rad <= 1)[..., None], 255 - rad[..., None] * (255 - hue), hue / np.maximum(rad, 1)[..., None])
    rgb = col.astype(np.uint8)
    rgb[~ok] = 0
    return rgb


def wheel_key(size: int = 101) -> np.ndarray:
    """(size, size, 3) uint8: the colour wheel itself, the key to `flow_to_rgb` (rim = `max_norm`)."""
    r = (size - 1) / 2
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) - r
    flow = np.stack([x / r, y / r], -1)
    inside = np.hypot(x, y) <= r
    key = flow_to_rgb(flow, inside, max_norm=1.0)
    key[~inside] = 255
    return key
