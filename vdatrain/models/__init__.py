"""Segmentation models by name: plain nn.Modules, a simple name -> constructor table.

Every model maps (B, 3, H, W) normalised RGB to logits (B, num_classes, H/s, W/s)
with s = `model.output_stride` (8 for DeepLabV2, 4 for DAFormer), and exposes
`model.backbone` and `model.features(x)` (the last backbone stage).
"""

from __future__ import annotations

from functools import partial

from vdatrain.models.accel import ACCEL
from vdatrain.models.daformer import DAFormer
from vdatrain.models.deeplabv2 import DeepLabV2
from vdatrain.models.hrda import HRDA

MODELS = {
    "deeplabv2_r101": partial(DeepLabV2, depth=101, stem="deep"),  # the paper's DeepLabV2 (ResNet-101-v1c)
    "deeplabv2_r101_tv": partial(DeepLabV2, depth=101, stem="plain"),  # with torchvision's resnet101 weights
    "deeplabv2_r50": partial(DeepLabV2, depth=50, stem="deep"),
    "deeplabv2_r18": partial(DeepLabV2, depth=18, stem="deep"),  # CPU demos and tests
    "daformer_mitb5": partial(DAFormer, variant="mit_b5"),  # the paper's SegFormer MiT-B5 + DAFormer head
    "daformer_mitb0": partial(DAFormer, variant="mit_b0"),  # CPU demos and tests
    # Narrow networks of the same families, only for checking paper recipes at their full input geometry
    # on a CPU (`vdatrain check --narrow`, `make paper-check`): every code path, little arithmetic.
    "deeplabv2_check": partial(DeepLabV2, depth=18, stem="deep", width=8),
    "daformer_check": partial(DAFormer, variant="mit_narrow", embed=32),
}
NARROW = {"deeplabv2": "deeplabv2_check", "daformer": "daformer_check"}  # family (name prefix) -> its check model


def build_model(name: str, num_classes: int = 19, hrda=None, accel=None, checkpointing: bool = False):
    """The named model; wrapped in HRDA multi-resolution fusion when `hrda` (a recipe's model.hrda) is given,
    and then in the two-frame ACCEL model when `accel` (model.accel) is. `checkpointing`: the backbone's
    stages are activation-checkpointed in training (exact; `vdatrain.models.checkpointing`)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r} (choose from {', '.join(MODELS)})")
    model = MODELS[name](num_classes=num_classes, checkpointing=checkpointing)
    if hrda is not None:
        model = HRDA(model, num_classes, hrda.context_scale, hrda.detail_crop, hrda.detail_stride)
    if accel is not None:
        model = ACCEL(model, num_classes, accel.pair)
    return model
