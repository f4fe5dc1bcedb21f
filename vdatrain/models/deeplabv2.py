"""DeepLabV2: dilated ResNet + a head of parallel 3x3 convs at dilations 6 and 12 whose outputs are summed.

    x (B, 3, H, W) normalised RGB -> logits (B, num_classes, ceil(H/8), ceil(W/8))

Logits stay at stride 8; callers upsample (HRDA fuses at that scale). The HRDA
scale-attention head on DeepLabV2 is a second `DLV2Head`.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from vdatrain.models.resnet import ResNet


class DLV2Head(nn.Module):
    """(B, C_in, h, w) -> (B, out, h, w): sum of 3x3 convs (with bias) at the given dilations."""

    def __init__(self, in_channels: int, out_channels: int, dilations=(6, 12)):
        super().__init__()
        self.aspp = nn.ModuleList(nn.Conv2d(in_channels, out_channels, 3, 1, d, d) for d in dilations)
        for conv in self.aspp:
            nn.init.normal_(conv.weight, 0, 0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(conv(x) for conv in self.aspp)


class DeepLabV2(nn.Module):
    def __init__(self, num_classes: int = 19, depth: int = 101, stem: str = "deep", dilations=(6, 12),
                 width: int = 64, checkpointing: bool = False):
        super().__init__()
        self.backbone = ResNet(depth, stem, width=width, checkpointing=checkpointing)
        self.head = DLV2Head(self.backbone.out_channels, num_classes, dilations)
        self.output_stride = 8

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> last-stage features (B, C, H/8, W/8), for the ImageNet feature distance."""
        return self.backbone(x)

    def forward(self, x: torch.Tensor, return_features: bool = False):
        """Logits; with `return_features`, (logits, last-stage features) from the same pass."""
        feats = self.backbone(x)
        return (self.head(feats), feats) if return_features else self.head(feats)
