"""ImageNet feature distance: keep the source's thing-class features close to the ImageNet backbone's.

A frozen copy of the backbone as it was initialised (ImageNet weights when the recipe
loads them) sees the same image as the student. Feature cells are kept where the
source label, downscaled to the feature grid, has one "thing" class covering at least
75% of the cell; loss = mean over those cells of the L2 distance between the two
last-stage feature vectors, times the weight (0.005). No such cell: zero loss (the
mean over an empty set would be NaN).
"""

from __future__ import annotations

import copy
from contextlib import nullcontext

import torch
import torch.nn as nn
import torch.nn.functional as F

from flowprep.store.layout import IGNORE_LABEL as IGNORE  # the one ignore label, the store's



def downscale_label(label: torch.Tensor, size: tuple[int, int], majority: float, num_classes: int) -> torch.Tensor:
    """(B, H, W) -> (B, h, w): each cell's majority class if it covers >= `majority` of the cell, else 255."""
    onehot = F.one_hot(torch.where(label == IGNORE, num_classes, label), num_classes + 1).permute(0, 3, 1, 2).float()
    share, cls = F.adaptive_avg_pool2d(onehot, size).max(dim=1)
    return torch.where((share >= majority) & (cls < num_classes), cls, torch.full_like(cls, IGNORE))


def class_table(classes, device) -> torch.Tensor:
    """(256,) bool on `device`: True at the trainIds in `classes` (a lookup table for `thing_mask`)."""
    table = torch.zeros(IGNORE + 1, dtype=torch.bool)
    table[list(classes)] = True
    return table.to(device)


def thing_mask(label: torch.Tensor, size: tuple[int, int], classes, majority: float, num_classes: int) -> torch.Tensor:
    """(B, H, W) label -> (B, h, w) bool: cells whose majority class is one of `classes` (trainIds, or their
    `class_table` on the label's device)."""
    small = downscale_label(label, size, majority, num_classes)
    table = classes if isinstance(classes, torch.Tensor) else class_table(classes, label.device)
    return table[small]


class FeatureDistance:
    def __init__(self, model: nn.Module, spec, num_classes: int = 19):
        self.backbone = copy.deepcopy(model.backbone).eval().requires_grad_(False)
        self.spec, self.num_classes = spec, num_classes
        self.things = class_table(spec.classes, next(model.parameters()).device)  # made on the device once

    def imagenet_features(self, image: torch.Tensor, amp=nullcontext) -> torch.Tensor:
        """The frozen backbone's last stage for `image`, under `amp` (bf16 recipes: bf16, as the student)."""
        with torch.no_grad(), amp():
            return self.backbone(image)[-1]

    def loss(self, features: torch.Tensor, image: torch.Tensor, label: torch.Tensor, amp=nullcontext) -> torch.Tensor:
        """features (B, D, h, w) of the student for `image` (B, 3, H', W'); label (B, H, W) of the crop; `amp`
        the autocast context of the run's forwards."""
        mask = thing_mask(label, features.shape[-2:], self.things, self.spec.majority, self.num_classes)
        dist = torch.linalg.vector_norm(features.float() - self.imagenet_features(image, amp).float(), dim=1)
        # the mean over the mask without reading it on the host (`dist[mask]` or `mask.any()` wait for the GPU
        # every step); no thing cell: 0, with the graph kept (DDP expects every parameter's gradient)
        total = torch.where(mask, dist, torch.zeros_like(dist)).sum()
        return self.spec.weight * total / mask.sum().clamp(min=1)
