"""Flow files other tools use: KITTI 16-bit PNG and Middlebury .flo.

KITTI (the reference's storage): 3-channel uint16 PNG, R = u * 64 + 2^15,
G = v * 64 + 2^15, B = 1 where valid; range |u|, |v| < 512 px, step 1/64 px.
Middlebury .flo: b"PIEH", int32 width, int32 height, then float32 (u, v) per pixel,
row-major. It has no validity mask: exports write the validity beside it as a PNG.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from flowprep.errors import FlowprepError

KITTI_LIMIT = (65535 - 32768) / 64  # 511.98 px


def read_kitti(path) -> tuple[np.ndarray, np.ndarray]:
    """-> flow (H, W, 2) float32 pixels, valid (H, W) bool."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise FlowprepError(f"{path}: not a readable PNG")
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint16:
        raise FlowprepError(f"{path}: not a KITTI flow PNG (need 16-bit, 3 channels; got {img.dtype} {img.shape})")
    b, g, r = img[..., 0], img[..., 1], img[..., 2]  # OpenCV reads BGR
    flow = np.stack([(r.astype(np.float32) - 32768) / 64, (g.astype(np.float32) - 32768) / 64], -1)
    valid = b > 0
    flow[~valid] = 0
    return flow, valid


def write_kitti(path, flow: np.ndarray, valid: np.ndarray | None = None) -> None:
    """Vectors beyond the format's +-512 px range are written invalid, never wrapped."""
    valid = np.ones(flow.shape[:2], bool) if valid is None else valid.astype(bool)
    valid = valid & (np.abs(flow) < KITTI_LIMIT).all(-1) & np.isfinite(flow).all(-1)
    enc = np.clip(np.rint(np.nan_to_num(flow) * 64 + 32768), 0, 65535).astype(np.uint16)
    img = np.stack([valid.astype(np.uint16), enc[..., 1], enc[..., 0]], -1)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"{path}: could not be written")


def read_flo(path) -> np.ndarray:
    data = Path(path).read_bytes()
    if data[:4] != b"PIEH":
        raise FlowprepError(f"{path}: not a Middlebury .flo file (bad magic)")
    w, h = np.frombuffer(data[4:12], "<i4")
    if len(data) != 12 + 8 * w * h:
        raise FlowprepError(f"{path}: {len(data)} bytes, expected {12 + 8 * w * h} for {w}x{h}")
    return np.frombuffer(data[12:], "<f4").reshape(h, w, 2).copy()


def write_flo(path, flow: np.ndarray) -> None:
    h, w = flow.shape[:2]
    Path(path).write_bytes(b"PIEH" + np.array([w, h], "<i4").tobytes() + flow.astype("<f4").tobytes())


def resize_flow(flow: np.ndarray, valid: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize a flow field and scale its vectors with it (the reference forgot the scaling)."""
    h, w = flow.shape[:2]
    out = cv2.resize(flow, (width, height), interpolation=cv2.INTER_LINEAR)
    out[..., 0] *= width / w
    out[..., 1] *= height / h
    ok = cv2.resize(valid.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)
    return out, ok
