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

A strategy is a function registered in `REFINEMENTS` (the recipe's `adapt.refine.strategy`
names it): it gets the `Candidates` of a batch (after the filling above) and returns where
the refined label is kept and where it is the warped map's; the filling, the labels and the
weights are the same for every strategy. One that reads the ground truth (the oracles) is
marked `@uses_truth`, and the training then loads the target's labels. A new strategy is one
function with the decorator, in any module imported before the recipe is loaded.

Weight of a refined pixel, by `weight`: "warped" (the reference) is the warped weight of
t+k (its own confidence share and margins, warped; frame t's where filled) wherever the
reference takes the warped map: consistency (whose labels agree anyway), warp frame,
oracle_warped, and max confidence where t+k is the surer; frame t's where the label came
from t. "frame_t" is frame t's weight everywhere. Ignored pixels weigh 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from flowprep.store.layout import IGNORE_LABEL as IGNORE  # the one ignore label, the store's
from vdatrain.registry import Registry

REFINEMENTS = Registry("refinement strategy", "adapt.refine.strategy")
INVALID = ("reference_strips", "frame_t", "ignore")
STRIP_SIDE = 100  # the reference's side strips, pixels of the crop


@dataclass
class Candidates:
    """The two labels a strategy chooses between, all (B, H, W), after invalid warps were filled (`invalid`).

    label_t, conf_t   frame t's pseudo-label (int64) and confidence
    label_k, conf_k   frame t+k's, warped to t (frame t's where filled)
    usable            bool: the warp is valid, or the pixel was filled with frame t's
    invalid           the recipe's rule for invalid warps (reference_strips, frame_t, ignore)
    truth             frame t's ground truth (int64), for strategies marked `uses_truth`; else None
    """
    label_t: torch.Tensor
    conf_t: torch.Tensor
    label_k: torch.Tensor
    conf_k: torch.Tensor
    usable: torch.Tensor
    invalid: str
    truth: torch.Tensor | None


def uses_truth(strategy):
    """Mark a strategy that reads the ground truth of frame t (an oracle): training then loads target labels."""
    strategy.needs_truth = True
    return strategy


def needs_truth(name: str) -> bool:
    return getattr(REFINEMENTS.get_or_raise(name), "needs_truth", False)


@REFINEMENTS.register("consistency")
def consistency(c: Candidates):
    """Frame t's label where both frames agree; ignored elsewhere. -> (keep, from_k)"""
    keep = c.usable & (c.label_k == c.label_t)
    return keep, keep


@REFINEMENTS.register("max_confidence")
def max_confidence(c: Candidates):
    """The more confident of the two (frame t where the warp is unusable, unless invalid warps are ignored)."""
    from_k = c.usable & (c.conf_k > c.conf_t)
    return (torch.ones_like(c.usable) if c.invalid != "ignore" else c.usable), from_k


@REFINEMENTS.register("warp_frame")
def warp_frame(c: Candidates):
    """The warped label of t+k wherever usable."""
    return c.usable, c.usable


@REFINEMENTS.register("oracle_warped")
@uses_truth
def oracle_warped(c: Candidates):
    """The warped label of t+k where it equals the ground truth (the reference code's oracle, Tables 5-8)."""
    keep = c.usable & (c.label_k == c.truth)
    return keep, keep


@REFINEMENTS.register("oracle")
@uses_truth
def oracle(c: Candidates):
    """Frame t's label where the ground truth confirms it (the paper's text)."""
    return c.label_t == c.truth, torch.zeros_like(c.usable)


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
    choose = REFINEMENTS.get_or_raise(strategy)
    if getattr(choose, "needs_truth", False) and truth is None:
        raise ValueError(f"{strategy} refinement needs the ground truth of frame t")
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
    # keep: the refined label exists there; from_k: it (and its weight) is the warped map's
    keep, from_k = choose(Candidates(label_t, conf_t, label_k, conf_k, valid | fill, invalid, truth))
    label = torch.where(keep, torch.where(from_k, label_k, label_t), IGNORE)
    w = torch.where(from_k, weight_k, weight_t) if weight == "warped" else weight_t
    return label, torch.where(keep, w, 0.0)


class RefinementPictures:
    """An evaluator (`vdatrain.evaluation.evaluators`) of refinement recipes: `refine_<id>.png` for the first
    `count` images, what the recipe's flow refinement (`spec`, its adapt.refine) does to the pseudo-label with
    the evaluated model as the teacher: single-frame predictions of frame t and of the pair's frame, the
    latter's class probabilities warped to t by the stored flow (nearest pixel), then `refine` as in training
    (every pixel weighs 1). An image whose store lacks the pair's frame or flow gets none."""

    def __init__(self, out_dir, count: int, spec):
        self.out_dir, self.count, self.spec = Path(out_dir), count, spec

    def process(self, sample) -> None:
        from flowprep.figures import save
        from flowprep.store import flow_part, pair_offsets
        from vdatrain.figures import refinement_figure
        from vdatrain.models.warp import warp

        pair, r = self.spec.pair, sample.reader
        partner = pair_offsets(pair)[1]
        if sample.n >= self.count or pair not in r.flow_pairs or partner not in r.frame_offsets \
                or not r.complete(flow_part(pair))[sample.index]:
            return
        p_t, p_k = sample.single_frame_probs(0), sample.single_frame_probs(partner)
        warped, ok = warp(p_k, *sample.flow(pair), mode="nearest")
        conf_t, label_t = p_t.max(1)
        conf_k, label_k = warped.max(1)
        ones = torch.ones_like(conf_t)
        truth = sample.label[None].to(conf_t.device)
        label, _ = refine(self.spec.strategy, label_t, conf_t, ones, label_k, conf_k, ones, ok, self.spec.invalid,
                          self.spec.weight, truth)
        as_np = lambda t: t[0].cpu().numpy().astype(np.uint8)  # noqa: E731
        self.out_dir.mkdir(parents=True, exist_ok=True)
        save(refinement_figure(sample.frame(0), as_np(label_t), as_np(label_k), ok[0].cpu().numpy(), as_np(label),
                               f"{sample.id}: {self.spec.strategy} refinement with {pair} ({self.spec.invalid})"),
             self.out_dir / f"refine_{sample.id}.png")

    def reduce(self, dist) -> None:
        pass

    def result(self) -> dict:
        return {}
