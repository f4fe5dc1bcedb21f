"""ACCEL: a two-frame segmentation model around any single-frame one (TPS, DA-VSN and MOM use it).

The wrapped network predicts frame t (with gradients) and frame t+k (without: the
second frame only informs, as in the reference); the logits of t+k are warped to t
through the flow t -> t+k and the two are fused by a 1x1 convolution 2C -> C without
bias, initialised to the identity on the t half and zero on the t+k half, so the
fused output equals the single-frame model's at step 0.

Both logits are upsampled to the input size before warping (the flow is in input
pixels); the fused output is (B, C, H, W). Where the warp has no valid source pixel
(out of frame, inconsistent flow, ego vehicle), frame t's own logits stand in for the
warped ones: the fusion never sees a made-up value.

Under HRDA the fusion applies to the fused multi-resolution output; the detail
branch's output passes through unchanged (its loss is frame t's alone). In training,
frame t+k goes through the same forward as t (context plus the same detail box), not
the sliding-window inference, which would cost several detail forwards per image.

Inference (`predict(x, window, stride, partner)`) predicts both full frames in one batch
(frame t's inputs, then frame t+k's: one forward, as the reference's teacher did, so a
BatchNorm in training mode normalises both frames together), sliding windows over each,
then warps the full-resolution logits of t+k and fuses: a window of t is never paired
with the same window of t+k, whose content has moved (the reference's bug).
Without a partner, forward and predict are the single-frame model's (the video
discriminator judges those; the teacher predicts frame t+k so for refinement).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from vdatrain.models.contract import Partner, SegOutput, Segmenter
from vdatrain.models.warp import warp


def _up(x: torch.Tensor, size) -> torch.Tensor:
    return x if x.shape[-2:] == tuple(size) else F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ACCEL(Segmenter):
    def __init__(self, model: nn.Module, num_classes: int = 19, pair: str = "bwd_1", fusion_lr: str = "backbone"):
        super().__init__()
        self.model = model
        self.pair = pair  # the stored flow pair (t -> t+k) that evaluation reads
        self.num_classes = num_classes
        self.fusion = nn.Conv2d(2 * num_classes, num_classes, 1, bias=False)
        with torch.no_grad():
            self.fusion.weight.zero_()
            self.fusion.weight[:, :num_classes, 0, 0] = torch.eye(num_classes)
        # modules the optimiser puts at the backbone's rate, not the head's (the reference's fusion: not "head")
        self.backbone_rate = (self.fusion,) if fusion_lr == "backbone" else ()

    @property
    def backbone(self) -> nn.Module:
        return self.model.backbone

    @property
    def single_frame(self) -> nn.Module:
        """The wrapped single-frame model (whole-model initial weights load into it)."""
        return self.model

    @property
    def output_stride(self) -> int:
        return self.model.output_stride

    def fuse(self, logits_t: torch.Tensor, logits_k: torch.Tensor, flow: torch.Tensor,
             valid: torch.Tensor | None) -> torch.Tensor:
        """logits (B, C, h, w) of t and t+k (any stride), flow (B, 2, H, W) t -> t+k in pixels,
        valid (B, H, W) bool -> fused logits (B, C, H, W)."""
        size = flow.shape[-2:]
        logits_t, logits_k = _up(logits_t, size), _up(logits_k.to(logits_t.dtype), size)
        warped, ok = warp(logits_k, flow, valid, mode="bilinear")
        warped = torch.where(ok[:, None], warped, logits_t)
        return self.fusion(torch.cat([logits_t, warped], dim=1))

    def forward(self, x: torch.Tensor, partner: Partner | None = None) -> SegOutput:
        """x (B, 3, H, W) frame t -> SegOutput whose logits are fused with frame t+k's (B, C, H, W); the detail
        and features are frame t's. Under HRDA, frame t+k goes through the same training forward with the same
        detail box (not the sliding inference, which would cost several detail forwards per image)."""
        out = self.model(x)
        if partner is None:
            # keeps the fusion weight in the graph, so DDP finds a gradient for every parameter
            out.logits = out.logits + self.fusion.weight.sum() * 0
            return out
        with torch.no_grad():
            logits_k = (self.model(partner.other, box=out.box) if out.box is not None else self.model(partner.other)).logits
        out.logits = self.fuse(out.logits, logits_k, partner.flow, partner.valid)
        return out

    def predict(self, x: torch.Tensor, window=None, stride=None, partner: Partner | None = None,
                batch: int = 1) -> torch.Tensor:
        """Frame t's logits fused with frame t+k's, each frame predicted whole (or by sliding windows) on its own,
        (B, C, H, W); without `partner`, the single-frame model's prediction."""
        if partner is None:
            return self.model.predict(x, window, stride, batch=batch)
        logits_t, logits_k = self.model.predict(torch.cat([x, partner.other]), window, stride, batch=batch).chunk(2)
        return self.fuse(logits_t, logits_k, partner.flow, partner.valid)
