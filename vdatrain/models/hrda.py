"""HRDA multi-resolution fusion around a DeepLabV2 or DAFormer segmentation model.

Context branch: the whole input scaled by `context_scale` (0.5). Detail branch: a
`detail_crop` window at full resolution. Both use the same backbone and the same
segmentation head; a separate scale-attention head on the context features gives,
through a sigmoid, one weight per class and position:

    fused = up(a) * s_detail + up((1 - a) * s_context)

(1 - a) multiplies the context logits before they are upsampled, as HRDA does.

Training, `forward(x)` (`vdatrain.models.contract`): one detail box per forward, shared by
the batch, drawn at random with corners on a `box_grid`-pixel lattice (or given: `box=`,
as ACCEL does for frame t+k); logits are fused at the detail features' resolution (stride
s = `output_stride` of the input) and a = 0 outside the box, since no detail prediction
exists there. Returns a SegOutput with
    logits    (B, C, H/s, W/s)  fused
    detail    (B, C, h/s, w/s)  for the box's (h, w)
    features  the last backbone stage of the context branch (for the feature distance), computed from
              `feature_input`, the context-scaled input

Inference, `predict(x)`: the detail logits come from sliding `detail_crop` windows
at `detail_stride` over the whole input (averaged where they overlap), each window's
logits upsampled to its pixels, and the fusion happens at pixel resolution, so
windows need not fall on the feature grid (BDD's 360 / 180):
    logits  (B, C, H, W)
All detail windows of all B inputs go through the backbone as ONE batch, as HRDA's
batched slide does: one kernel launch per layer, and a BatchNorm in training mode (the
EMA teacher) normalises with the statistics of all windows together, as the reference's
teacher did (`vdatrain.models.batch_groups` gives each window its own instead).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from vdatrain.data.geometry import Rect
from vdatrain.models.contract import Partner, SegOutput, Segmenter
from vdatrain.models.sliding import slide_logits, window_grid


def random_detail_box(height: int, width: int, crop: tuple[int, int], grid: int, generator=None) -> Rect:
    """A crop-sized box inside (height, width) whose corner lies on a `grid`-pixel lattice."""
    ch, cw = crop
    ny, nx = (height - ch) // grid + 1, (width - cw) // grid + 1
    y0 = int(torch.randint(ny, (1,), generator=generator)) * grid
    x0 = int(torch.randint(nx, (1,), generator=generator)) * grid
    return y0, y0 + ch, x0, x0 + cw


def _up(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class HRDA(Segmenter):
    """Around any registered single-frame model that has `backbone`, `head` and `attention_head(num_classes)`."""

    def __init__(self, base: nn.Module, num_classes: int = 19, context_scale: float = 0.5,
                 detail_crop=(512, 512), detail_stride=(256, 256), box_grid: int = 8):
        super().__init__()
        self.backbone, self.head = base.backbone, base.head
        self.attention = base.attention_head(num_classes)
        self.output_stride = base.output_stride
        self.num_classes = num_classes
        self.context_scale = context_scale
        self.detail_crop, self.detail_stride = tuple(detail_crop), tuple(detail_stride)
        self.box_grid = box_grid

    def context(self, x: torch.Tensor):
        """-> (context logits, attention in [0, 1], context features, the context-scaled input); all but the
        last at the context features' stride."""
        small = F.interpolate(x, scale_factor=self.context_scale, mode="bilinear", align_corners=False)
        feats = self.backbone(small)
        return self.head(feats), torch.sigmoid(self.attention(feats)), feats[-1], small

    def detail(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) full-resolution window -> (B, C, h/s, w/s)."""
        return self.head(self.backbone(x))

    def fuse_train(self, s_context: torch.Tensor, attention: torch.Tensor, s_detail: torch.Tensor, box: Rect,
                   size: tuple[int, int]) -> torch.Tensor:
        """Fuse at the detail stride for an input of `size` pixels; attention is zeroed outside the box."""
        s = self.output_stride
        out = (math.ceil(size[0] / s), math.ceil(size[1] / s))
        y0, y1, x0, x1 = box
        # the box in attention cells: the context features' stride is s / context_scale pixels
        r = s / self.context_scale
        mask = torch.zeros_like(attention)
        mask[:, :, int(y0 // r):int(y1 // r), int(x0 // r):int(x1 // r)] = 1
        attention = attention * mask
        canvas = s_detail.new_zeros((*s_detail.shape[:2], *out))
        canvas[:, :, y0 // s:y0 // s + s_detail.shape[2], x0 // s:x0 // s + s_detail.shape[3]] = s_detail
        return _up(attention, out) * canvas + _up((1 - attention) * s_context, out)

    def forward(self, x: torch.Tensor, partner: Partner | None = None, box: Rect | None = None) -> SegOutput:
        """Training forward with the detail box `box`, or one drawn now (torch's generator: the loop seeds it)."""
        if box is None:
            box = random_detail_box(*x.shape[-2:], self.detail_crop, self.box_grid)
        s_context, attention, ctx_feats, small = self.context(x)
        y0, y1, x0, x1 = box
        s_detail = self.detail(x[:, :, y0:y1, x0:x1])
        fused = self.fuse_train(s_context, attention, s_detail, box, x.shape[-2:])
        return SegOutput(logits=fused, features=ctx_feats, feature_input=small, detail=s_detail, box=box)

    def predict_whole(self, x: torch.Tensor) -> torch.Tensor:
        s_context, attention, _, _ = self.context(x)
        size = x.shape[-2:]
        windows = len(window_grid(*size, self.detail_crop, self.detail_stride))
        s_detail = slide_logits(self.detail, x, self.num_classes, self.detail_crop, self.detail_stride, windows)
        return _up(attention, size) * s_detail + _up((1 - attention) * s_context, size)
