"""The student's segmentation loss on one image batch, single-resolution or HRDA.

Single resolution: CE(model(x), y, w). HRDA: one random detail box per forward (corners
on the recipe's pixel grid), loss (1 - w_d) CE(fused, y) + w_d CE(detail, y in the box).
Also returns the last-stage features of the same forward (HRDA: the context branch's)
and the image they were computed from, for the feature distance.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vdatrain.losses import segmentation_loss
from vdatrain.models.hrda import random_detail_box


def student_loss(net, image: torch.Tensor, label: torch.Tensor, weight: torch.Tensor | None, hrda, amp, **frames):
    """image (B, 3, H, W), label (B, H, W) int64, weight (B, H, W) or None -> (loss, features, image seen).
    `frames` are a two-frame (ACCEL) model's other frame, flow and validity."""
    if hrda is None:
        with amp():
            logits, feats = net(image, return_features=True, **frames)
        return segmentation_loss(logits, label, weight), feats, image
    y0, y1, x0, x1 = box = random_detail_box(*image.shape[-2:], hrda.detail_crop, hrda.box_grid)
    with amp():
        out = net(image, detail_box=box, **frames)
    inside = (slice(None), slice(y0, y1), slice(x0, x1))
    loss = (1 - hrda.detail_loss_weight) * segmentation_loss(out["fused"], label, weight) + \
        hrda.detail_loss_weight * segmentation_loss(out["detail"], label[inside], None if weight is None else weight[inside])
    context = F.interpolate(image, scale_factor=hrda.context_scale, mode="bilinear", align_corners=False)
    return loss, out["context_features"], context


def student_logits(net, image: torch.Tensor, hrda, amp) -> torch.Tensor:
    """The single-frame logits (B, C, h, w) of a training forward (HRDA: fused, with a random detail box)."""
    with amp():
        if hrda is None:
            return net(image)
        return net(image, detail_box=random_detail_box(*image.shape[-2:], hrda.detail_crop, hrda.box_grid))["fused"]
