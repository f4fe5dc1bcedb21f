"""Pseudo-label refinement with optical flow (the paper's Fig. 4).

Inputs for frame t: its pseudo-label and confidence, and those of frame t+k warped
to t (k < 0 backward, k > 0 forward) with a validity mask. Strategies:
- consistency: keep the label where both agree, ignore elsewhere;
- max_confidence: take the more confident of the two;
- warp_frame: use the warped label of t+k;
- oracle: keep the label of t where it equals the ground truth (an upper bound).
Where the warp is invalid (out of frame, inconsistent flow, ego vehicle), the
`invalid` setting decides: "frame_t" keeps frame t's label (the reference refilled
such pixels from frame t), "ignore" drops them.
"""

from __future__ import annotations

import torch

IGNORE = 255
STRATEGIES = ("consistency", "max_confidence", "warp_frame", "oracle")


def refine(strategy: str, label_t: torch.Tensor, conf_t: torch.Tensor, label_k: torch.Tensor, conf_k: torch.Tensor,
           valid: torch.Tensor, invalid: str = "frame_t", truth: torch.Tensor | None = None) -> torch.Tensor:
    """All (B, H, W): labels int64, confidences float, valid bool (the warp of t+k) -> refined label."""
    if strategy == "consistency":
        out = torch.where(label_t == label_k, label_t, IGNORE)
    elif strategy == "max_confidence":
        out = torch.where(conf_k > conf_t, label_k, label_t)
    elif strategy == "warp_frame":
        out = label_k
    elif strategy == "oracle":
        if truth is None:
            raise ValueError("oracle refinement needs the ground truth of frame t")
        return torch.where(label_t == truth, label_t, IGNORE)
    else:
        raise ValueError(f"refinement strategy {strategy!r} (choose from {', '.join(STRATEGIES)})")
    fallback = label_t if invalid == "frame_t" else torch.full_like(label_t, IGNORE)
    return torch.where(valid, out, fallback)
