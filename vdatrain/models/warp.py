"""Warping ("prop"): bring a tensor of frame t+k into frame t through the flow stored at t.

The flow F (B, 2, H, W), in pixels (u = x, v = y), is the motion from frame t to frame
t+k: the content at pixel p of frame t is at p + F(p) in frame t+k. Warping gathers

    out(p) = X_{t+k}(p + F(p))

with bilinear interpolation (probabilities, logits, features) or the nearest pixel
(labels, kept integer). The result comes with an explicit validity mask: the source
point must lie inside frame t+k, and the caller's mask (the store's flow validity:
forward-backward consistency, ego vehicle) must hold. Invalid pixels hold 0 and are
to be masked by the caller; no sentinel value ever goes into a float tensor.

Flows from the data pipeline are already in crop coordinates (scaled with the
resize, u negated on a flip), so crops warp like whole frames.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _grid(flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    _, _, h, w = flow.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=flow.device, dtype=flow.dtype),
                            torch.arange(w, device=flow.device, dtype=flow.dtype), indexing="ij")
    return xs + flow[:, 0], ys + flow[:, 1]  # (B, H, W) source coordinates in frame t+k


def warp(x: torch.Tensor, flow: torch.Tensor, valid: torch.Tensor | None = None,
         mode: str = "bilinear") -> tuple[torch.Tensor, torch.Tensor]:
    """x (B, C, H, W) of frame t+k, flow (B, 2, H, W) t -> t+k, valid (B, H, W) bool or None
    -> (warped (B, C, H, W) in x's dtype, valid (B, H, W) bool)."""
    if x.shape[-2:] != flow.shape[-2:]:
        raise ValueError(f"warp: tensor {tuple(x.shape[-2:])} and flow {tuple(flow.shape[-2:])} differ in size")
    b, c, h, w = x.shape
    sx, sy = _grid(flow.float())
    if mode == "nearest":
        ix, iy = torch.round(sx).long(), torch.round(sy).long()
        inside = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
        index = (iy.clamp(0, h - 1) * w + ix.clamp(0, w - 1)).view(b, 1, h * w).expand(b, c, h * w)
        out = torch.gather(x.reshape(b, c, h * w), 2, index).view(b, c, h, w)
    elif mode == "bilinear":
        inside = (sx >= 0) & (sx <= w - 1) & (sy >= 0) & (sy <= h - 1)
        grid = torch.stack([2 * sx / max(w - 1, 1) - 1, 2 * sy / max(h - 1, 1) - 1], dim=-1)
        out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=True).to(x.dtype)
    else:
        raise ValueError(f"warp: mode {mode!r} (choose 'nearest' or 'bilinear')")
    ok = inside if valid is None else inside & valid.bool()
    return out * ok[:, None].to(out.dtype), ok
