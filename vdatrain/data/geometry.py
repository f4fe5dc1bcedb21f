"""Resize-then-crop and flip, applied identically to frames, labels, flows and masks.

A `CropBox` describes "resize the native frame by `scale`, crop h x w at (y0, x0),
maybe flip horizontally". Instead of resizing whole frames, only the native window
that the crop maps to is read (a zero-copy store view) and sampled once with an
affine map; bilinear sampling of that window gives what resizing the whole frame
and cropping would (pixel centres aligned: native x = (x_out + 0.5) / scale - 0.5).

Flow geometry (the reference got both wrong): resizing by s multiplies the flow
vectors by s; a horizontal flip mirrors the field and negates u.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

Window = tuple[int, int, int, int]  # (y0, y1, x0, x1) native pixels, half-open


@dataclass(frozen=True)
class CropBox:
    scale: float  # resized = native * scale
    y0: int  # crop origin in resized pixels
    x0: int
    h: int  # crop size in resized pixels
    w: int
    flip: bool = False

    def native_window(self, height: int, width: int) -> Window:
        """The native pixels bilinear sampling of this crop touches (plus one of margin), clipped to the frame."""
        s = self.scale
        y0 = math.floor((self.y0 + 0.5) / s - 0.5) - 1
        x0 = math.floor((self.x0 + 0.5) / s - 0.5) - 1
        y1 = math.ceil((self.y0 + self.h - 0.5) / s - 0.5) + 2
        x1 = math.ceil((self.x0 + self.w - 0.5) / s - 0.5) + 2
        return max(y0, 0), min(y1, height), max(x0, 0), min(x1, width)

    def _matrix(self, window: Window) -> np.ndarray:
        """Affine map from crop pixel (x, y) to window coordinates (for cv2.WARP_INVERSE_MAP)."""
        s, (wy0, _, wx0, _) = self.scale, window
        return np.array([[1 / s, 0, (self.x0 + 0.5) / s - 0.5 - wx0],
                         [0, 1 / s, (self.y0 + 0.5) / s - 0.5 - wy0]], np.float64)

    def sample(self, window_data: np.ndarray, window: Window, nearest: bool = False) -> np.ndarray:
        """(wh, ww[, C]) native window -> (h, w[, C]) crop, flipped if the box says so.

        Bilinear for images and flows, nearest for labels and masks; the frame's edge is replicated.
        """
        data = window_data
        dtype = data.dtype
        if data.dtype == bool:
            data = data.view(np.uint8)
        m = self._matrix(window)
        oy, ox = m[1, 2], m[0, 2]
        if self.scale == 1 and oy == int(oy) and ox == int(ox) and 0 <= oy and oy + self.h <= data.shape[0] \
                and 0 <= ox and ox + self.w <= data.shape[1]:
            # no resampling: a whole-pixel crop inside the window is a slice (the values bilinear sampling at
            # whole pixels gives), copied once
            out = data[int(oy):int(oy) + self.h, int(ox):int(ox) + self.w]
            out = out[:, ::-1] if self.flip else out
            return np.array(out, dtype=dtype)
        if data.strides[-1] != data.itemsize or (data.ndim == 3 and data.strides[1] != data.itemsize * data.shape[2]):
            data = np.ascontiguousarray(data)  # OpenCV takes strided rows (a store window), not strided pixels
        out = cv2.warpAffine(data, m, (self.w, self.h),
                             flags=(cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR) | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_REPLICATE)
        out = out.reshape(self.h, self.w, *data.shape[2:])
        if self.flip:
            out = cv2.flip(out, 1).reshape(out.shape)  # one pass, instead of a reversed view then a copy
        return out.astype(dtype, copy=False)

    def flow(self, window_data: np.ndarray, window: Window) -> np.ndarray:
        """(wh, ww, 2) native flow (pixels) -> (h, w, 2) flow of the crop: resampled, scaled by `scale`,
        and mirrored with u negated when flipped."""
        out = self.sample(window_data.astype(np.float32), window) * np.float32(self.scale)
        if self.flip:
            out[..., 0] *= -1
        return out


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


def margin_mask(native: tuple[int, int], **margins) -> np.ndarray:
    """(H, W) float32 1/0: `margin_bounds` as a mask."""
    y0, y1, x0, x1 = margin_bounds(native, **margins)
    mask = np.zeros(native, np.float32)
    mask[y0:y1, x0:x1] = 1
    return mask
