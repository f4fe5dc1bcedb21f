"""Mixing source into target (DACS): the mix strategies, by the recipe's `adapt.mix`.

A strategy maps the batch's source labels (B, H, W) to masks (B, H, W) float (1 = take the
source), or None for no mixing (the target alone). Registered in `MIXES`; `mix` applies a mask.

"classmix" (ClassMix): paste the pixels of half the source classes onto the target.

Classes are drawn from the union of the batch's source labels (ignore excluded),
ceil(n / 2) of them, independently for each image; the mask of image i marks
where its source label holds a drawn class. Mixed image and label take the source
inside the mask and the target (its pseudo-label) outside; the mixed weight is 1
inside (ground truth) and the pseudo-label weight outside.
"""

from __future__ import annotations

import math

import torch

from flowprep.store.layout import IGNORE_LABEL as IGNORE  # the one ignore label, the store's
from vdatrain.registry import Registry

MIXES = Registry("mix strategy", "adapt.mix")


@MIXES.register("none")
def no_mix(source_labels: torch.Tensor, generator: torch.Generator | None = None) -> None:
    """No mixing: the mixed loss sees the target crop and its pseudo-label alone."""
    return None


@MIXES.register("classmix")
def class_masks(source_labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, H, W) int64 source labels -> (B, H, W) float32 masks (1 = take the source)."""
    classes = torch.unique(source_labels)
    classes = classes[classes != IGNORE]
    masks = []
    for label in source_labels:
        order = torch.randperm(len(classes), generator=generator).to(classes.device)
        chosen = classes[order[:math.ceil(len(classes) / 2)]]
        masks.append(torch.isin(label, chosen).float())
    return torch.stack(masks)


def mix(mask: torch.Tensor, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mask * source + (1 - mask) * target, the (B, H, W) mask broadcast over channels of (B, C, H, W)."""
    if source.dim() == mask.dim() + 1:
        mask = mask[:, None]
    return torch.where(mask.bool(), source, target)
