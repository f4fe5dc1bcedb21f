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

Inference (`predict_pair`) slides windows over each full frame separately, then
warps the full-resolution logits of t+k and fuses: a window of t is never paired
with the same window of t+k, whose content has moved (the reference's bug).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from vdatrain.warp import warp


def _up(x: torch.Tensor, size) -> torch.Tensor:
    return x if x.shape[-2:] == tuple(size) else F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ACCEL(nn.Module):
    def __init__(self, model: nn.Module, num_classes: int = 19, pair: str = "bwd_1"):
        super().__init__()
        self.model = model
        self.pair = pair  # the stored flow pair (t -> t+k) that evaluation reads
        self.fusion = nn.Conv2d(2 * num_classes, num_classes, 1, bias=False)
        with torch.no_grad():
            self.fusion.weight.zero_()
            self.fusion.weight[:, :num_classes, 0, 0] = torch.eye(num_classes)

    @property
    def backbone(self) -> nn.Module:
        return self.model.backbone

    @property
    def output_stride(self) -> int:
        return getattr(self.model, "output_stride", 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.features(x)

    def fuse(self, logits_t: torch.Tensor, logits_k: torch.Tensor, flow: torch.Tensor,
             valid: torch.Tensor | None) -> torch.Tensor:
        """logits (B, C, h, w) of t and t+k (any stride), flow (B, 2, H, W) t -> t+k in pixels,
        valid (B, H, W) bool -> fused logits (B, C, H, W)."""
        size = flow.shape[-2:]
        logits_t, logits_k = _up(logits_t, size), _up(logits_k.to(logits_t.dtype), size)
        warped, ok = warp(logits_k, flow, valid, mode="bilinear")
        warped = torch.where(ok[:, None], warped, logits_t)
        return self.fusion(torch.cat([logits_t, warped], dim=1))

    def forward(self, x: torch.Tensor, other: torch.Tensor | None = None, flow: torch.Tensor | None = None,
                valid: torch.Tensor | None = None, **kw):
        """x (B, 3, H, W) frame t, other (B, 3, H, W) frame t+k, flow (B, 2, H, W) t -> t+k, valid (B, H, W);
        `kw` go to the wrapped model (detail_box, return_features). Without `other`: the single-frame
        model's output (the video discriminator judges those)."""
        out = self.model(x, **kw)
        if other is None:
            # keeps the fusion weight in the graph, so DDP finds a gradient for every parameter
            zero = self.fusion.weight.sum() * 0
            return {**out, "fused": out["fused"] + zero} if isinstance(out, dict) else \
                (out[0] + zero, *out[1:]) if isinstance(out, tuple) else out + zero
        with torch.no_grad():
            if "detail_box" in kw:  # HRDA training: frame t+k through the same forward (same box) as t
                logits_k = self.model(other, detail_box=kw["detail_box"])["fused"]
            else:
                logits_k = self.model(other)
        if isinstance(out, dict):  # HRDA training forward
            return {**out, "fused": self.fuse(out["fused"], logits_k, flow, valid)}
        if isinstance(out, tuple):  # (logits, features)
            return (self.fuse(out[0], logits_k, flow, valid), *out[1:])
        return self.fuse(out, logits_k, flow, valid)

    @torch.no_grad()
    def predict_pair(self, slide, frame_t: torch.Tensor, frame_k: torch.Tensor, flow: torch.Tensor,
                     valid: torch.Tensor | None) -> torch.Tensor:
        """Dual-frame inference: `slide(model, image)` gives full-frame logits (B, C, H, W) of one frame;
        frames (B, 3, H, W), flow (B, 2, H, W) t -> t+k at full resolution -> fused logits (B, C, H, W)."""
        return self.fuse(slide(self.model, frame_t), slide(self.model, frame_k), flow, valid)
