"""DAFormer: MiT encoder + DAFormer decoder head with context-aware feature fusion.

Head: each encoder stage is embedded to 256 channels by a linear layer, upsampled
to stride 4 and concatenated (4 x 256); the fusion is ASPP-like with depthwise-
separable 3x3 convs at dilations 6/12/18 beside a 1x1 branch, then a 3x3 bottleneck
conv (all with BatchNorm and ReLU); dropout 0.1 and a 1x1 classifier. HRDA's
scale-attention head on DAFormer is the same head with a 1x1 fusion
(`fusion="conv1x1"`). Submodule names follow the released DAFormer/HRDA heads.

    x (B, 3, H, W) normalised RGB -> SegOutput with logits (B, num_classes, ceil(H/r), ceil(W/r)), r the
    backbone's finest reduction (4 for MiT and for a ViT's simple pyramid)
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from vdatrain.models.contract import Partner, SegOutput, Segmenter
from vdatrain.models.backbone import Backbone
from vdatrain.models.mit import MixVisionTransformer
from vdatrain.models.registry import MODELS
from vdatrain.models.timm_backbone import TimmBackbone


class ConvModule(nn.Module):
    """conv -> BatchNorm -> ReLU, named as mmcv's ConvModule (`conv`, `bn`)."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, dilation: int = 1, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, 1, dilation * (kernel // 2), dilation, groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)), inplace=True)


class SeparableConvModule(nn.Module):
    """Depthwise 3x3 (dilated) then pointwise 1x1, each with BN + ReLU (mmcv's DepthwiseSeparableConvModule)."""

    def __init__(self, cin: int, cout: int, dilation: int):
        super().__init__()
        self.depthwise_conv = ConvModule(cin, cin, 3, dilation, groups=cin)
        self.pointwise_conv = ConvModule(cin, cout, 1)

    def forward(self, x):
        return self.pointwise_conv(self.depthwise_conv(x))


class ASPPFusion(nn.Module):
    """(B, cin, h, w) -> (B, cout, h, w): 1x1 branch and separable 3x3 branches at `dilations`, concatenated,
    then a 3x3 bottleneck conv."""

    def __init__(self, cin: int, cout: int, dilations=(1, 6, 12, 18)):
        super().__init__()
        self.aspp_modules = nn.ModuleList(ConvModule(cin, cout, 1) if d == 1 else SeparableConvModule(cin, cout, d)
                                          for d in dilations)
        self.bottleneck = ConvModule(len(dilations) * cout, cout, 3)

    def forward(self, x):
        return self.bottleneck(torch.cat([m(x) for m in self.aspp_modules], 1))


class LinearEmbed(nn.Module):
    """(B, C, h, w) -> (B, dim, h, w) by a linear layer on each position."""

    def __init__(self, cin: int, dim: int):
        super().__init__()
        self.proj = nn.Linear(cin, dim)

    def forward(self, x):
        b, _, h, w = x.shape
        return self.proj(x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(b, -1, h, w)


class DAFormerHead(nn.Module):
    """[(B, c_i, h_i, w_i)] x 4 -> (B, num_classes, h_1, w_1)."""

    def __init__(self, in_channels: list[int], num_classes: int, embed: int = 256, fusion: str = "aspp",
                 dropout: float = 0.1):
        super().__init__()
        self.embed_layers = nn.ModuleDict({str(i): LinearEmbed(c, embed) for i, c in enumerate(in_channels)})
        if fusion == "aspp":
            self.fuse_layer = ASPPFusion(len(in_channels) * embed, embed)
        elif fusion == "conv1x1":
            self.fuse_layer = ConvModule(len(in_channels) * embed, embed, 1)
        else:
            raise ValueError(f"fusion {fusion!r}: choose 'aspp' or 'conv1x1'")
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(embed, num_classes, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        size = feats[0].shape[-2:]
        embedded = [F.interpolate(self.embed_layers[str(i)](f), size=size, mode="bilinear", align_corners=False)
                    if i else self.embed_layers[str(i)](f) for i, f in enumerate(feats)]
        return self.conv_seg(self.dropout(self.fuse_layer(torch.cat(embedded, 1))))


class DAFormer(Segmenter):
    """Any `Backbone` with the DAFormer head on all its levels; logits at the finest level's reduction."""

    def __init__(self, backbone: Backbone, num_classes: int = 19, embed: int = 256):
        super().__init__()
        self.backbone = backbone
        self.embed = embed  # the head's channels (HRDA's attention head takes the same)
        self.head = DAFormerHead(backbone.channels, num_classes, embed)
        self.output_stride = backbone.levels[0].reduction
        self.num_classes = num_classes

    def attention_head(self, num_classes: int) -> nn.Module:
        """HRDA's scale-attention head for this network: a DAFormer head with a 1x1 fusion."""
        return DAFormerHead(self.backbone.channels, num_classes, self.embed, fusion="conv1x1")

    def forward(self, x: torch.Tensor, partner: Partner | None = None) -> SegOutput:
        feats = self.backbone(x)
        return SegOutput(logits=self.head(feats), features=feats[-1], feature_input=x)


def mit(variant: str, num_classes: int = 19, embed: int = 256, checkpointing: bool = False,
        backbone=None) -> DAFormer:
    if backbone is not None:
        raise ValueError("model.backbone: only the timm family (daformer_timm) takes a backbone spec")
    return DAFormer(MixVisionTransformer(variant, 0.1, checkpointing), num_classes, embed)


def timm_backbone(num_classes: int = 19, checkpointing: bool = False, backbone=None, embed: int = 256) -> DAFormer:
    """A timm model (`model.backbone`, a `BackboneSpec`) under the DAFormer head."""
    if backbone is None:
        raise ValueError("model.backbone: daformer_timm needs one (e.g. {timm: vit_large_patch16_dinov3})")
    return DAFormer(TimmBackbone(backbone, checkpointing), num_classes, embed)


MODELS.register("daformer_mitb5")(partial(mit, "mit_b5"))  # the paper's SegFormer MiT-B5 + DAFormer head
MODELS.register("daformer_mitb0")(partial(mit, "mit_b0"))  # CPU demos and tests
# a narrow network of the family for `vdatrain check --narrow` (see deeplabv2_check)
MODELS.register("daformer_check")(partial(mit, "mit_narrow", embed=32))
# any timm model (DINOv2, DINOv3, EVA-02, ConvNeXt, ...) named by model.backbone; its narrow network is the same
# timm architecture made narrow (`BackboneSpec.narrow`) under a narrow head
MODELS.register("daformer_timm")(timm_backbone)
MODELS.register("daformer_timm_check")(partial(timm_backbone, embed=32))
