"""Pseudo-labels from teacher logits: the argmax class and ONE confidence weight per batch.

The weight is the fraction of the batch's pixels whose top softmax probability
reaches the threshold (0.968), a scalar, as DACS computes it; per-pixel confidence
weighting is a different method. Margin masks (zero near the image border, where
Cityscapes has rectification artefacts and the ego vehicle) multiply it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def class_probs(logits: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """(B, C, h, w) logits -> (B, C, H, W) float32 softmax, upsampled bilinearly to `size` (the crop) first."""
    logits = logits.float()
    if size is not None and logits.shape[-2:] != tuple(size):
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    return torch.softmax(logits, dim=1)


def confident_share(confidence: torch.Tensor, threshold: float = 0.968) -> torch.Tensor:
    """The share of pixels of a batch (B, H, W) whose top-class probability reaches `threshold`: a 0-d tensor."""
    return (confidence >= threshold).float().mean()

