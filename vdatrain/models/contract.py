"""What every segmentation model takes and gives: one output type, one partner-frame argument, one `predict`.

Training forward, every model:

    model(x, partner=None) -> SegOutput

    x     (B, 3, H, W) normalised RGB (ImageNet mean and std)
    partner  Partner: frame t+k, the flow t -> t+k and its validity, for two-frame models (ACCEL);
          single-frame models take none

Inference, every model:

    model.predict(x, window=None, stride=None, partner=None, batch=1) -> logits

    without `window`: the whole input in one prediction (the EMA teacher's pseudo-labels), logits
    (B, C, H/s, W/s) at the model's own stride (8 for DeepLabV2, 4 for DAFormer; 1 for HRDA and ACCEL,
    which predict at the input's pixels);
    with `window` (h, w) and `stride`: sliding windows as mmseg's `slide_inference` (the paper's
    evaluation), each window's logits upsampled to its pixels and averaged, (B, C, H, W); `batch`
    windows per forward.

`model.pair` names the stored flow pair a two-frame model reads (None: a single-frame model), so
evaluation knows which frame and flow to load without asking what the model is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from vdatrain.data.geometry import Rect
from vdatrain.models.sliding import slide_logits



@dataclass
class SegOutput:
    """A training forward's result.

    logits          (B, C, H/s, W/s) the prediction the loss sees (HRDA: fused; ACCEL: fused with frame t+k)
    features        (B, D, h, w) last backbone stage of the same pass (HRDA: the context branch's), for the
                    feature distance
    feature_input   (B, 3, h', w') the image `features` were computed from (HRDA: the context-scaled input)
    detail          (B, C, bh/s, bw/s) HRDA's detail logits inside `box`, else None
    box             (y0, y1, x0, x1) input pixels of HRDA's detail box, else None
    """
    logits: torch.Tensor
    features: torch.Tensor
    feature_input: torch.Tensor
    detail: torch.Tensor | None = None
    box: Rect | None = None


@dataclass
class Partner:
    """The other frame of a two-frame model, for a batch of frames t.

    other  (B, 3, H, W) frame t+k, normalised like frame t
    flow   (B, 2, H, W) t -> t+k in pixels of frame t (u = x, v = y)
    valid  (B, H, W) bool, the flow's validity
    """
    other: torch.Tensor
    flow: torch.Tensor
    valid: torch.Tensor | None


class Segmenter(nn.Module):
    """Base of every model (single-frame ones, HRDA around them, ACCEL around either): `predict` from `forward`.
    Subclasses set `backbone` (a `vdatrain.models.backbone.Backbone`), `head`, `output_stride`, `num_classes` and
    define `forward(x, partner=None) -> SegOutput`; a two-frame model sets `pair` and overrides `predict`."""

    pair: str | None = None  # a single-frame model reads no flow
    output_stride: int = 1
    backbone_rate: tuple = ()  # modules outside the backbone trained at the backbone's rate (ACCEL's fusion)

    def predict(self, x: torch.Tensor, window=None, stride=None, partner: Partner | None = None,
                batch: int = 1) -> torch.Tensor:
        if window is not None:
            return slide_logits(self.predict_whole, x, self.num_classes, window, stride, batch)
        return self.predict_whole(x)

    def predict_whole(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the whole input in one prediction (HRDA overrides it with its fused inference)."""
        return self.forward(x).logits
