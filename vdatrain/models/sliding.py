"""Sliding-window inference: full-resolution logits from a model that sees one window at a time.

Windows are laid out as mmseg's `slide_inference` (which the paper's numbers used):
ceil((H - h) / stride) + 1 rows of windows (likewise columns), the last one flush
with the border; overlapping logits are averaged.

    image (B, 3, H, W) -> logits (B, C, H, W)
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def window_grid(height: int, width: int, window: tuple[int, int], stride: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """(y0, y1, x0, x1) windows covering the frame; windows larger than the frame are clipped to it."""
    (wh, ww), (sh, sw) = window, stride
    rows = max(height - wh + sh - 1, 0) // sh + 1
    cols = max(width - ww + sw - 1, 0) // sw + 1
    boxes = []
    for r in range(rows):
        for c in range(cols):
            y1, x1 = min(r * sh + wh, height), min(c * sw + ww, width)
            boxes.append((max(y1 - wh, 0), y1, max(x1 - ww, 0), x1))
    return boxes


def slide_logits(model: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, num_classes: int,
                 window: tuple[int, int], stride: tuple[int, int], batch: int = 1) -> torch.Tensor:
    """Average of the model's logits over sliding windows; each window's logits (any stride) are
    upsampled bilinearly to the window size first.

    `batch`: windows of one size go through the model `batch` at a time (B x batch images per forward) instead
    of one by one: fewer, fuller forwards, the same result for a model whose output for one image does not
    depend on the others in its batch (evaluation mode; NOT BatchNorm normalising with batch statistics, as
    the EMA teacher does, which is why `HRDA` batches only then)."""
    b, _, h, w = image.shape
    out = image.new_zeros((b, num_classes, h, w))
    count = image.new_zeros((1, 1, h, w))
    boxes = window_grid(h, w, window, stride)
    groups: dict = {}
    for box in boxes:  # windows clipped to a small frame can differ in size: batch those of one size
        groups.setdefault((box[1] - box[0], box[3] - box[2]), []).append(box)
    for size, same in groups.items():
        for k in range(0, len(same), max(batch, 1)):
            chunk = same[k:k + max(batch, 1)]
            logits = model(torch.cat([image[:, :, y0:y1, x0:x1] for y0, y1, x0, x1 in chunk]))
            if logits.shape[-2:] != size:
                logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
            for j, (y0, y1, x0, x1) in enumerate(chunk):
                out[:, :, y0:y1, x0:x1] += logits[j * b:(j + 1) * b]
                count[:, :, y0:y1, x0:x1] += 1
    return out / count
