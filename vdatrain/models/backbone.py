"""What every backbone gives and what heads, HRDA, the feature distance and the optimiser may assume of it.

    backbone(x) -> [f_1, ..., f_n]   always a list, finest level first
        x    (B, 3, H, W) ImageNet-normalised RGB, any H and W that are multiples of `size_divisibility`
        f_i  (B, levels[i].channels, ceil(H / levels[i].reduction), ceil(W / levels[i].reduction))

Declared, in the manner of timm's `feature_info` and detectron2's `output_shape` / `size_divisibility`:

    levels              one `Level` (channels, reduction) per returned map
    size_divisibility   input sides must be multiples of it (1: any size; a backbone that pads does so
                        itself and still returns the ceil sizes above)
    no_weight_decay()   parameter names (relative to the backbone) that never take weight decay, whatever the
                        recipe's norm rule: position embeddings and tokens of ViTs; none for ResNet and MiT,
                        whose groups the reference's rule alone decides
    layer_id(name)      the depth of a parameter for layer-wise learning-rate decay: 0 for the embedding,
                        1 .. num_layers for the blocks (`optim.layer_decay`)
    set_checkpointing   activation checkpointing of the blocks in training (same losses and gradients)
    fit_weights(state)  a pretrained state dict already renamed to this family's layout (`models.weights`) made
                        to fit this backbone: position embeddings resized to its grid, a patch embedding to its
                        patch size, a prefix added; ResNet and MiT take their files as they are
    fresh_prefixes      parameter-name prefixes no pretrained file holds (a ViT's feature pyramid): they start
                        from their initialisation, every other parameter must be in the file

Callers read these instead of probing attributes: DeepLabV2's head reads the last level, the DAFormer head
every level, HRDA and the feature distance the last map, the recipe checks `size_divisibility`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn


@dataclass(frozen=True)
class Level:
    channels: int
    reduction: int  # input pixels per feature cell along each side


class Backbone(nn.Module):
    """Base of every backbone: the defaults are those of a plain convolutional network."""

    name: str = ""  # what error messages call it (the timm model name; else the class name)
    levels: tuple[Level, ...] = ()
    size_divisibility: int = 1
    num_layers: int = 0
    fresh_prefixes: tuple[str, ...] = ()

    def no_weight_decay(self) -> set[str]:
        return set()

    def layer_id(self, name: str) -> int:
        return self.num_layers

    def set_checkpointing(self, on: bool) -> None:
        self.checkpointing = on

    def fit_weights(self, state: dict) -> dict:
        return state

    @property
    def channels(self) -> list[int]:
        return [level.channels for level in self.levels]
