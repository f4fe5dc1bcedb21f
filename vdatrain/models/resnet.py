"""ResNet backbones for DeepLabV2: v1c (deep stem, as mmcv's `resnet101_v1c`) or torchvision's 7x7 stem.

Output stride 8: stage strides (1, 2, 1, 1) and dilations (1, 1, 2, 4); the first
block of a dilated stage uses half its stage's dilation ("contract dilation", as
mmseg's ResNetV1c). BatchNorm is trainable. Attribute names follow mmcv
(`stem.{0,1,3,4,6,7}`, `layer{1..4}.{i}.conv{1,2,3}`, `bn{1,2,3}`, `downsample.{0,1}`)
and torchvision (`conv1`, `bn1`), so their checkpoints load key for key.

    x (B, 3, H, W) -> [features (B, C, ceil(H/8), ceil(W/8))], C = 2048 (ResNet-50/101) or 512 (ResNet-18):
    one level (`vdatrain.models.backbone`)
"""

from __future__ import annotations

import torch
import torch.nn as nn

from vdatrain.models.backbone import Backbone, Level
from vdatrain.models.recompute import run_stage


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, dilation, dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, dilation, dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride and dilation here, "pytorch" style) -> 1x1, x4 channels."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, dilation, dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


DEPTHS = {18: (BasicBlock, (2, 2, 2, 2)), 50: (Bottleneck, (3, 4, 6, 3)), 101: (Bottleneck, (3, 4, 23, 3))}


class ResNet(Backbone):
    """Dilated ResNet with output stride 8.

    stem: "deep" (v1c: three 3x3 convs 32/32/64, the first with stride 2) or "plain"
    (torchvision: one 7x7 conv, 64 channels, stride 2); both are followed by a 3x3
    max-pool with stride 2. `width`: channels of the first stage (64; every width
    scales with it; 8 gives the narrow network of `vdatrain check --narrow`).
    `checkpointing`: the four stages are activation-checkpointed in training
    (`vdatrain.models.recompute`).
    """

    def __init__(self, depth: int = 101, stem: str = "deep", strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4),
                 width: int = 64, checkpointing: bool = False):
        super().__init__()
        self.checkpointing = checkpointing
        if depth not in DEPTHS:
            raise ValueError(f"ResNet depth {depth} not supported (choose {sorted(DEPTHS)})")
        block, layers = DEPTHS[depth]
        self.stem_type = stem
        if stem == "deep":
            half = width // 2
            self.stem = nn.Sequential(
                nn.Conv2d(3, half, 3, 2, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
                nn.Conv2d(half, half, 3, 1, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
                nn.Conv2d(half, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        elif stem == "plain":
            self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.relu = nn.ReLU(inplace=True)
        else:
            raise ValueError(f"stem {stem!r}: choose 'deep' or 'plain'")
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = width
        for i, (n, stride, dilation) in enumerate(zip(layers, strides, dilations)):
            planes = width * 2 ** i
            downsample = None
            if stride != 1 or inplanes != planes * block.expansion:
                downsample = nn.Sequential(nn.Conv2d(inplanes, planes * block.expansion, 1, stride, bias=False),
                                           nn.BatchNorm2d(planes * block.expansion))
            first_dilation = dilation // 2 if dilation > 1 else 1  # contract dilation
            blocks = [block(inplanes, planes, stride, first_dilation, downsample)]
            inplanes = planes * block.expansion
            blocks += [block(inplanes, planes, 1, dilation) for _ in range(1, n)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.levels = (Level(inplanes, 8),)
        self.num_layers = 4  # layer-wise decay: the stem is layer 0, layer1..layer4 are 1..4
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def layer_id(self, name: str) -> int:
        return int(name[5]) if name.startswith("layer") else 0

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x) if self.stem_type == "deep" else self.relu(self.bn1(self.conv1(x)))
        x = self.maxpool(x)
        for i in range(1, 5):
            stage = getattr(self, f"layer{i}")
            x = run_stage(stage, stage, x, enabled=self.checkpointing)
        return [x]
