"""Pictures for people: colourised labels and colour-coded flow."""

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


def flow_to_rgb(flow: np.ndarray, valid: np.ndarray | None = None, max_norm: float | None = None) -> np.ndarray:
    """(H, W, 2) flow in pixels -> (H, W, 3) uint8 RGB: hue = direction, saturation = magnitude.

    Magnitudes are scaled by `max_norm` (default: the 99th percentile of valid vectors);
    invalid pixels are black.
    """
    u, v = flow[..., 0].astype(np.float32), flow[..., 1].astype(np.float32)
    mag, ang = cv2.cartToPolar(u, v)
    ok = np.ones(mag.shape, bool) if valid is None else valid.astype(bool)
    scale = max_norm or max(float(np.percentile(mag[ok], 99)) if ok.any() else 1.0, 1e-6)
    hsv = np.zeros((*mag.shape, 3), np.uint8)
    hsv[..., 0] = (ang * 90 / np.pi).astype(np.uint8)  # OpenCV hue is 0..179
    hsv[..., 1] = np.clip(mag / scale * 255, 0, 255).astype(np.uint8)
    hsv[..., 2] = 255
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    rgb[~ok] = 0
    return rgb
