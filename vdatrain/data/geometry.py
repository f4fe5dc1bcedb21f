"""Where a training crop lies: resize-then-crop and flip, shared by a sample's frames, label, flows and masks.

A `CropBox` describes "resize the native frame by `scale`, crop h x w at (y0, x0),
maybe flip horizontally". Instead of resizing whole frames, only the native window
that the crop maps to is read (a zero-copy store view) and sampled once with an
affine map (`vdatrain.data.crops`); sampling that window gives what resizing the whole
frame and cropping would (pixel centres aligned: native x = (x_out + 0.5) / scale - 0.5).

Flow geometry (the reference got both wrong): resizing by s multiplies the flow
vectors by s; a horizontal flip mirrors the field and negates u.

Rectangles of pixels, whatever they mark (a native window, HRDA's detail box, a sliding window, the
margins), are one type: `Rect` = (y0, y1, x0, x1), half-open.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

Rect = tuple[int, int, int, int]  # (y0, y1, x0, x1) pixels, half-open


@dataclass(frozen=True)
class CropBox:
    scale: float  # resized = native * scale
    y0: int  # crop origin in resized pixels
    x0: int
    h: int  # crop size in resized pixels
    w: int
    flip: bool = False

    def native_window(self, height: int, width: int) -> Rect:
        """The native pixels sampling this crop touches (plus one of margin), clipped to the frame."""
        s = self.scale
        # from pixel centres (bilinear, nearest), and from floor(x / s) (OpenCV's nearest resize of labels)
        y0 = min(math.floor((self.y0 + 0.5) / s - 0.5) - 1, math.floor(self.y0 / s))
        x0 = min(math.floor((self.x0 + 0.5) / s - 0.5) - 1, math.floor(self.x0 / s))
        y1 = math.ceil((self.y0 + self.h - 0.5) / s - 0.5) + 2
        x1 = math.ceil((self.x0 + self.w - 0.5) / s - 0.5) + 2
        return max(y0, 0), min(y1, height), max(x0, 0), min(x1, width)


def random_box(rng: np.random.Generator, native: tuple[int, int], scale: float, crop: tuple[int, int],
               flip_p: float = 0.5) -> CropBox:
    """A uniformly placed crop of the frame resized by `scale`; smaller frames give a smaller crop."""
    rh, rw = round(native[0] * scale), round(native[1] * scale)
    h, w = min(crop[0], rh), min(crop[1], rw)
    return CropBox(scale, int(rng.integers(0, rh - h + 1)), int(rng.integers(0, rw - w + 1)), h, w,
                   bool(rng.random() < flip_p))


def class_ratio_ok(label: np.ndarray, max_ratio: float = 0.75, ignore: int = 255) -> bool:
    """No single class covers more than `max_ratio` of the crop's labelled pixels (and more than one class is present)."""
    if label.dtype == np.uint8:  # the loader's labels: OpenCV's histogram is ~20x faster than np.bincount here
        counts = cv2.calcHist([np.ascontiguousarray(label)], [0], None, [256], [0, 256]).ravel().astype(np.int64)
    else:
        counts = np.bincount(label.ravel(), minlength=ignore + 1)
    counts = np.delete(counts, ignore)
    counts = counts[counts > 0]
    return len(counts) > 1 and counts.max() / counts.sum() < max_ratio


def margin_bounds(native: tuple[int, int], reference=(1024, 2048), top=30, bottom=240, left=30,
                  right=30) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) native pixels the pseudo-label margins keep: the reference's Cityscapes margins (30 px
    top, 240 bottom, 30 left and right at 2048x1024) scaled to `native` (H, W)."""
    h, w = native
    sy, sx = h / reference[0], w / reference[1]
    return round(top * sy), h - round(bottom * sy), round(left * sx), w - round(right * sx)
