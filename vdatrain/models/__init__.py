"""Segmentation models by name: plain nn.Modules in one file per family, found through `MODELS`.

Every model follows `vdatrain.models.contract`: `forward(x, partner=None) -> SegOutput`,
`predict(x, window, stride, partner=None) -> logits`, `backbone` (a `vdatrain.models.backbone.Backbone`:
ImageNet weights load into it), `head`, and `attention_head(num_classes)` for HRDA. A recipe's `model.name` picks a registered
single-frame model; `model.hrda` wraps it in multi-resolution fusion and `model.accel` in the
two-frame model. A new backbone is one file here that registers its variants, and its import below.
"""

from __future__ import annotations

from vdatrain.models import daformer, deeplabv2  # noqa: F401  (they register their variants)
from vdatrain.models.accel import ACCEL
from vdatrain.models.contract import Partner, SegOutput
from vdatrain.models.hrda import HRDA
from vdatrain.models.registry import MODELS

__all__ = ["ACCEL", "HRDA", "MODELS", "Partner", "SegOutput", "build_model", "check_model"]


def check_model(name: str) -> str | None:
    """The narrow network of `name` (`<name>_check`) or of its family (`<family>_check`), for
    `vdatrain check --narrow`; None if there is none."""
    if name.endswith("_check"):
        return name
    return next((n for n in (f"{name}_check", f"{name.split('_')[0]}_check") if n in MODELS), None)


def build_model(name: str, num_classes: int = 19, hrda=None, accel=None, checkpointing: bool = False,
                backbone=None):
    """The registered model `name` (with the timm model `backbone`, a recipe's model.backbone); wrapped in HRDA multi-resolution fusion when `hrda` (a recipe's model.hrda)
    is given, and then in the two-frame ACCEL model when `accel` (model.accel) is. `checkpointing`: the
    backbone's stages are activation-checkpointed in training (exact; `vdatrain.models.recompute`)."""
    model = MODELS.get_or_raise(name)(num_classes=num_classes, checkpointing=checkpointing, backbone=backbone)
    if hrda is not None:
        model = HRDA(model, num_classes, hrda.context_scale, hrda.detail_crop, hrda.detail_stride, hrda.box_grid)
    if accel is not None:
        model = ACCEL(model, num_classes, accel.pair, accel.fusion_lr)
    return model
