"""DeepLabV2: dilated ResNet + a head of parallel 3x3 convs at dilations 6 and 12 whose outputs are summed.

    x (B, 3, H, W) normalised RGB -> SegOutput with logits (B, num_classes, ceil(H/8), ceil(W/8))

Logits stay at stride 8; callers upsample (HRDA fuses at that scale). The HRDA
scale-attention head on DeepLabV2 is a second `DLV2Head` (`attention_head`).
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn

from vdatrain.models.contract import Partner, SegOutput, Segmenter
from vdatrain.models.registry import MODELS
from vdatrain.models.resnet import ResNet


class DLV2Head(nn.Module):
    """[..., (B, C_in, h, w)] -> (B, out, h, w): sum of 3x3 convs (with bias) at the given dilations on the
    backbone's last level."""

    def __init__(self, in_channels: int, out_channels: int, dilations=(6, 12)):
        super().__init__()
        self.aspp = nn.ModuleList(nn.Conv2d(in_channels, out_channels, 3, 1, d, d) for d in dilations)
        for conv in self.aspp:
            nn.init.normal_(conv.weight, 0, 0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return sum(conv(feats[-1]) for conv in self.aspp)


class DeepLabV2(Segmenter):
    def __init__(self, num_classes: int = 19, depth: int = 101, stem: str = "deep", dilations=(6, 12),
                 width: int = 64, checkpointing: bool = False, backbone=None):
        super().__init__()
        if backbone is not None:
            raise ValueError("model.backbone: only the timm family (daformer_timm) takes a backbone spec")
        self.backbone = ResNet(depth, stem, width=width, checkpointing=checkpointing)
        self.head = DLV2Head(self.backbone.channels[-1], num_classes, dilations)
        self.output_stride = self.backbone.levels[-1].reduction
        self.num_classes = num_classes

    def attention_head(self, num_classes: int) -> nn.Module:
        """HRDA's scale-attention head for this network: a second DeepLabV2 head."""
        return DLV2Head(self.backbone.channels[-1], num_classes)

    def forward(self, x: torch.Tensor, partner: Partner | None = None) -> SegOutput:
        feats = self.backbone(x)
        return SegOutput(logits=self.head(feats), features=feats[-1], feature_input=x)


MODELS.register("deeplabv2_r101")(partial(DeepLabV2, depth=101, stem="deep"))  # the paper's (ResNet-101-v1c)
MODELS.register("deeplabv2_r101_tv")(partial(DeepLabV2, depth=101, stem="plain"))  # torchvision's resnet101 weights
MODELS.register("deeplabv2_r50")(partial(DeepLabV2, depth=50, stem="deep"))
MODELS.register("deeplabv2_r18")(partial(DeepLabV2, depth=18, stem="deep"))  # CPU demos and tests
# a narrow network of the family, only for checking paper recipes at their full input geometry on a CPU
# (`vdatrain check --narrow`, `make paper-check`): every code path, little arithmetic
MODELS.register("deeplabv2_check")(partial(DeepLabV2, depth=18, stem="deep", width=8))
