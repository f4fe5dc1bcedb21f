"""mIoU from a confusion matrix, under the standard protocol and the reference's.

Confusion matrix: (C, C) int64, rows = label, columns = prediction, over pixels
whose label is not ignore (255). Per-class IoU = TP / (TP + FP + FN) summed over
the whole evaluation set (not averaged per image); mean over the evaluated
classes, skipping classes absent from both labels and predictions (NaN).

Protocols (docs/fidelity.md, evaluation):
- "standard": pixels whose label is a non-evaluated class are excluded; a pixel of
  an evaluated class predicted as a non-evaluated class is still an error (FN).
- "unifiedvideoda": the reference code base's, with which the paper's numbers were
  computed: pixels whose *prediction* is a non-evaluated class are excluded too
  (predicting "pole" on a VIPER shift costs nothing).
"""

from __future__ import annotations

import numpy as np
import torch

PROTOCOLS = ("standard", "unifiedvideoda")


def confusion(pred: torch.Tensor, label: torch.Tensor, num_classes: int, ignore: int = 255) -> torch.Tensor:
    """pred, label: integer tensors of the same shape -> (C, C) int64 counts [label, prediction]."""
    keep = (label != ignore) & (label >= 0) & (label < num_classes)
    idx = label[keep].long() * num_classes + pred[keep].long().clamp(0, num_classes - 1)
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_per_class(conf, evaluated: list[int], protocol: str = "standard") -> np.ndarray:
    """IoU of each class in `evaluated` (NaN where the class is absent from labels and predictions)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol {protocol!r}: choose {PROTOCOLS}")
    conf = np.asarray(conf, dtype=np.float64)
    rows = conf[evaluated]  # only pixels labelled with an evaluated class
    if protocol == "unifiedvideoda":
        rows = rows[:, evaluated]  # ... and predicted as one
        tp = np.diag(rows)
        fp = rows.sum(0) - tp
    else:
        tp = rows[np.arange(len(evaluated)), evaluated]
        fp = rows[:, evaluated].sum(0) - tp
    fn = rows.sum(1) - tp
    union = tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def miou(conf, evaluated: list[int], protocol: str = "standard") -> float:
    """Mean IoU in percent over the evaluated classes present in labels or predictions: the one place a
    confusion matrix becomes an mIoU (evaluation, temporal metrics, reports)."""
    return float(np.nanmean(iou_per_class(conf, evaluated, protocol) * 100))
