"""Segmentation losses.

Averaged over ALL pixels of the label, ignored (255) and zero-weight pixels
included in the denominator, as mmseg (and so the paper's numbers) does: a
pseudo-label weight of 0.4 scales the loss by 0.4 rather than being divided out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from flowprep.store.layout import IGNORE_LABEL as IGNORE  # the one ignore label, the store's



def segmentation_loss(logits: torch.Tensor, label: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of (B, C, h, w) logits, upsampled bilinearly to the (B, H, W) int64 label, with an
    optional (B, H, W) pixel weight; a scalar."""
    if logits.shape[-2:] != label.shape[-2:]:
        logits = F.interpolate(logits, size=label.shape[-2:], mode="bilinear", align_corners=False)
    ce = F.cross_entropy(logits.float(), label, ignore_index=IGNORE, reduction="none")
    return (ce if weight is None else ce * weight).mean()
