"""Read raw label files in each dataset's encoding and map them to Cityscapes trainIds."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from flowprep.errors import FlowprepError
from flowprep.manifest import Manifest


def _imread(path: Path, flags: int) -> np.ndarray:
    if not Path(path).is_file():
        raise FlowprepError(f"{path}: label file missing")
    # pixels as stored: no EXIF rotation (IMREAD_UNCHANGED never applies one)
    img = cv2.imread(str(path), flags if flags == cv2.IMREAD_UNCHANGED else flags | cv2.IMREAD_IGNORE_ORIENTATION)
    if img is None:
        raise FlowprepError(f"{path}: not a readable image (corrupt or not a PNG)")
    return img


def _read_indices(path: Path) -> np.ndarray:
    """A single-channel label file's values: a palette PNG gives its indices (OpenCV would expand the palette to
    colours; what an index means is the label encoding's business, not the palette's)."""
    from PIL import Image

    if not Path(path).is_file():
        raise FlowprepError(f"{path}: label file missing")
    try:
        with Image.open(path) as img:
            if img.mode == "P":
                return np.array(img)
    except Exception:  # noqa: BLE001 - Pillow's errors for a file it cannot open; OpenCV names them below
        pass
    return _imread(path, cv2.IMREAD_UNCHANGED)


def read_train_ids(manifest: Manifest, path) -> np.ndarray:
    """(H, W) uint8 trainIds (255 = ignore) from a raw label file of `manifest`'s dataset.

    A colour the manifest does not list is an error naming the file (a foreign palette means the wrong file
    or dataset); an id it does not list becomes 255, as cityscapesScripts' conversion does.
    """
    enc = manifest.label_encoding
    if enc == "rgb_palette":
        bgr = _imread(path, cv2.IMREAD_COLOR)
        packed = (bgr[..., 2].astype(np.int32) << 16) | (bgr[..., 1].astype(np.int32) << 8) | bgr[..., 0]
        keys = np.array([(c.colour[0] << 16) | (c.colour[1] << 8) | c.colour[2] for c in manifest.classes])
        values = np.array([c.train_id for c in manifest.classes], dtype=np.uint8)
        # Colours shared by several classes (VIPER van/train) must agree on the trainId.
        order = np.argsort(keys, kind="stable")
        keys, values = keys[order], values[order]
        pos = np.clip(np.searchsorted(keys, packed), 0, len(keys) - 1)
        known = keys[pos] == packed
        if not known.all():
            r, g, b = (int(v) for v in bgr[~known][0][::-1])
            raise FlowprepError(f"{path}: colour ({r}, {g}, {b}) is not in the {manifest.name} palette")
        return values[pos]
    if enc == "uint16_red_channel":
        img = _imread(path, cv2.IMREAD_UNCHANGED)
        if img.ndim != 3 or img.dtype != np.uint16:
            raise FlowprepError(f"{path}: expected a 16-bit 3-channel PNG, got {img.dtype} with shape {img.shape}")
        ids = img[..., 2]  # red, the last channel as OpenCV reads BGR
    elif enc in ("label_ids", "train_ids"):
        ids = _read_indices(path)
        if ids.ndim != 2 or ids.dtype != np.uint8:
            raise FlowprepError(f"{path}: expected a single-channel 8-bit PNG (grey or palette), found {ids.dtype} "
                                f"values in the shape {ids.shape}")
        if enc == "train_ids":
            bad = np.setdiff1d(np.unique(ids), np.r_[np.arange(19), 255])
            if bad.size:
                raise FlowprepError(f"{path}: values {bad.tolist()} are not trainIds (0..18, 255)")
            return ids
    else:
        raise FlowprepError(f"manifest {manifest.name}: unknown label encoding {enc!r}")
    lut = manifest.train_id_lut()
    return lut[ids]
