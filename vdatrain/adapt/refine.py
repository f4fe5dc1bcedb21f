"""Pseudo-label refinement with optical flow (the paper's Fig. 4), with the reference code's details.

Inputs for frame t: its pseudo-label, confidence and weight, and those of frame t+k
warped to t (k < 0 backward, k > 0 forward) with the warp's validity mask (the
warped weight is 0 where the warp is invalid). Strategies:
- consistency: keep frame t's label where both agree, ignore elsewhere;
- max_confidence: take the more confident of the two (frame t where the warp is invalid);
- warp_frame: use the warped label of t+k;
- oracle_warped: keep the warped label of t+k where it equals the ground truth (what the
  reference code computed for the paper's Tables 5-8 oracle rows);
- oracle: keep frame t's label where it equals the ground truth (the paper's text).

Pixels without a valid warp (out of frame, inconsistent flow, ego vehicle), by `invalid`:
- "reference_strips" (the reference's "bottom fill"): pixels whose warped weight is 0
  (an invalid warp, or nothing confident warped there) and that lie in the bottom rows
  (from row 800 of a 1024-high crop, from 70% of the height otherwise) or in the 100-px
  side strips, where the partner frame cannot see, take frame t's label and weight
  before the strategy; elsewhere invalid warps stay invalid: ignored by consistency and
  warp frame, frame t's under max confidence;
- "frame_t": every such pixel takes frame t's (our earlier rule);
- "ignore": every such pixel is ignored, whatever the strategy.

Weight of a refined pixel, by `weight`: "warped" (the reference) is the warped weight of
t+k (its own confidence share and margins, warped; frame t's where filled) wherever the
reference takes the warped map: consistency (whose labels agree anyway), warp frame,
oracle_warped, and max confidence where t+k is the surer; frame t's where the label came
from t. "frame_t" is frame t's weight everywhere. Ignored pixels weigh 0.
"""

from __future__ import annotations

import torch

from flowprep.store.layout import IGNORE_LABEL as IGNORE  # the one ignore label, the store's

STRATEGIES = ("consistency", "max_confidence", "warp_frame", "oracle_warped", "oracle")
INVALID = ("reference_strips", "frame_t", "ignore")
WEIGHTS = ("warped", "frame_t")
STRIP_SIDE = 100  # the reference's side strips, pixels of the crop


def reference_strips(shape, device) -> torch.Tensor:
    """(H, W) bool: the rows from 800 (a 1024-high crop) or from int(0.7 H) (other crops), and the 100-px
    strips at the left and right edge."""
    h, w = shape[-2:]
    top = 800 if h == 1024 else int(h * 0.7)
    rows = torch.arange(h, device=device)[:, None] >= top
    cols = torch.arange(w, device=device)[None, :]
    return rows | (cols < STRIP_SIDE) | (cols >= w - STRIP_SIDE)


def refine(strategy: str, label_t: torch.Tensor, conf_t: torch.Tensor, weight_t: torch.Tensor, label_k: torch.Tensor,
           conf_k: torch.Tensor, weight_k: torch.Tensor, valid: torch.Tensor, invalid: str = "reference_strips",
           weight: str = "warped", truth: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """All (B, H, W): labels int64, confidences and weights float, `valid` bool (the warp of t+k).
    Returns the refined label (IGNORE where dropped) and its weight (0 there)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"refinement strategy {strategy!r} (choose from {', '.join(STRATEGIES)})")
    if strategy.startswith("oracle") and truth is None:
        raise ValueError("oracle refinement needs the ground truth of frame t")
    weight_k = torch.where(valid, weight_k, 0.0)
    if invalid == "reference_strips":
        fill = (weight_k == 0) & reference_strips(valid.shape, valid.device)
    elif invalid == "frame_t":
        fill = ~valid
    elif invalid == "ignore":
        fill = torch.zeros_like(valid)
    else:
        raise ValueError(f"refine invalid {invalid!r} (choose from {', '.join(INVALID)})")
    label_k, conf_k = torch.where(fill, label_t, label_k), torch.where(fill, conf_t, conf_k)
    weight_k = torch.where(fill, weight_t, weight_k)
    usable = valid | fill

    from_k = torch.zeros_like(valid)  # where the refined label (and its weight) is the warped map's
    if strategy == "consistency":
        keep = usable & (label_k == label_t)
        from_k = keep
    elif strategy == "max_confidence":
        from_k = usable & (conf_k > conf_t)
        keep = torch.ones_like(valid) if invalid != "ignore" else usable
    elif strategy == "warp_frame":
        keep, from_k = usable, usable
    elif strategy == "oracle_warped":
        keep = usable & (label_k == truth)
        from_k = keep
    else:  # oracle, the paper's text: frame t's label where the ground truth confirms it
        keep = label_t == truth
    label = torch.where(keep, torch.where(from_k, label_k, label_t), IGNORE)
    w = torch.where(from_k, weight_k, weight_t) if weight == "warped" else weight_t
    return label, torch.where(keep, w, 0.0)
