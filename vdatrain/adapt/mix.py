"""Mixing source into target (DACS): the mix strategies, by the recipe's `adapt.mix`.

A strategy maps the batch's source labels (B, H, W) and the recipe's `adapt` section to masks
(B, H, W) float (1 = take the source), or None for no mixing (the target alone). Registered in
`MIXES`; `mix` applies a mask.

"classmix" (ClassMix): paste the pixels of half the source classes onto the target.

Classes are drawn from the union of the batch's source labels, ceil(n / 2) of them,
independently for each image, on the device; the mask of image i marks where its source
label holds a drawn class. The void label 255 is a candidate like any class
(`adapt.mix_ignore: candidate`, the reference's `get_class_masks`, which draws from
`torch.unique` of the labels: void pixels are pasted, and stay ignored in the loss) or
not (`excluded`). Mixed image and label take the source inside the mask and the target
(its pseudo-label) outside; the mixed weight is 1 inside (ground truth) and the
pseudo-label weight outside.
"""

from __future__ import annotations

import torch

from flowprep.store.layout import IGNORE_LABEL as IGNORE  # the one ignore label, the store's
from vdatrain.registry import Registry

MIXES = Registry("mix strategy", "adapt.mix")


@MIXES.register("none")
def no_mix(source_labels: torch.Tensor, spec=None, generator: torch.Generator | None = None) -> None:
    """No mixing: the mixed loss sees the target crop and its pseudo-label alone."""
    return None


@MIXES.register("classmix")
def class_masks(source_labels: torch.Tensor, spec=None, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, H, W) int64 source labels -> (B, H, W) float32 masks (1 = take the source); `spec`: the recipe's
    `adapt` (its `mix_ignore`; None: the void label is a candidate).

    On the labels' device, without reading anything back: each image gives every class a uniform random key
    (from the device's generator, which the loop seeds per iteration), absent classes the largest, and takes
    the ceil(n / 2) present classes with the smallest keys: a uniform draw of half the classes.
    """
    flat = source_labels.flatten(1)
    present = torch.zeros(IGNORE + 1, dtype=torch.bool, device=flat.device)
    present[flat.flatten()] = True
    if spec is not None and spec.mix_ignore == "excluded":
        present[IGNORE] = False
    keys = torch.rand((len(flat), IGNORE + 1), generator=generator, device=flat.device).masked_fill(~present, 2.0)
    rank = keys.argsort(1).argsort(1)  # each class's place in the image's random order
    chosen = rank < (present.sum() + 1) // 2
    return torch.gather(chosen, 1, flat).view_as(source_labels).float()


def mix(mask: torch.Tensor, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mask * source + (1 - mask) * target, the (B, H, W) mask broadcast over channels of (B, C, H, W)."""
    if source.dim() == mask.dim() + 1:
        mask = mask[:, None]
    return torch.where(mask.bool(), source, target)
