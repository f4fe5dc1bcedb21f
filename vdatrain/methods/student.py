"""The student's segmentation loss on one image batch, from the model's `SegOutput`.

    L = CE(logits, y, w)                                       single resolution
    L = (1 - w_d) CE(logits, y, w) + w_d CE(detail, y in box)  when the output has a detail branch (HRDA)

The output also carries the last-stage features of the same forward and the image they came
from (HRDA: the context branch's), for the feature distance.
"""

from __future__ import annotations

import torch

from vdatrain.losses import segmentation_loss
from vdatrain.models.contract import Partner, SegOutput


def student_loss(net, image: torch.Tensor, label: torch.Tensor, weight: torch.Tensor | None, detail_weight: float,
                 amp, partner: Partner | None = None) -> tuple[torch.Tensor, SegOutput]:
    """image (B, 3, H, W), label (B, H, W) int64, weight (B, H, W) or None -> (loss, the forward's output).
    `partner`: a two-frame model's other frame, flow and validity; `detail_weight`: w_d (HRDA's 0.1)."""
    with amp():
        out = net(image, partner)
    loss = segmentation_loss(out.logits, label, weight)
    if out.detail is None:
        return loss, out
    y0, y1, x0, x1 = out.box
    inside = (slice(None), slice(y0, y1), slice(x0, x1))
    detail = segmentation_loss(out.detail, label[inside], None if weight is None else weight[inside])
    return (1 - detail_weight) * loss + detail_weight * detail, out
