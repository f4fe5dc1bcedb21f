"""Temporal metrics of the paper (sections 4.4-4.5), from predictions of frames t and t+k.

With warp(pred_{t+k}) the prediction of t+k brought to t through the flow (nearest
pixel, valid pixels only) and y_t the label of t:
- PL-PredConsis-mIoU: mIoU of warp(pred_{t+k}) against pred_t (agreement over time);
- PL-Warped-mIoU / Acc: warp(pred_{t+k}) against y_t;
- PL-Consistency-mIoU / Acc: pred_t against y_t on the pixels where warp(pred_{t+k})
  equals pred_t, with the share of labelled valid pixels retained.
Each metric accumulates a confusion matrix over the evaluation set, and is reported
under both class protocols, like mIoU (`vdatrain.metrics.miou`: "unifiedvideoda", the
reference's, also leaves out pixels predicted as a non-evaluated class; the paper's
temporal figures were computed so). Accuracy comes in both definitions, each named:
- `*_acc`: class-wise mean accuracy, the mean over classes of TP / labelled pixels
  (per-class recall, mmseg's "Acc");
- `*_acc_precision`: the mean over classes of TP / predicted pixels (per-class
  precision), which is what the reference computed as PL-Warped-Acc.
"""

from __future__ import annotations

import numpy as np
import torch

from flowprep.store.layout import IGNORE_LABEL as IGNORE  # the one ignore label, the store's
from vdatrain.metrics.miou import confusion, miou



class TemporalMeter:
    """Accumulates the confusions of one frame distance."""

    def __init__(self, num_classes: int = 19):
        self.c = num_classes
        self.conf = {name: torch.zeros(num_classes, num_classes, dtype=torch.int64)
                     for name in ("predconsis", "warped", "consistency")}
        self.retained = [0, 0]  # consistent labelled pixels, labelled valid pixels

    def add(self, pred_t: torch.Tensor, warped_k: torch.Tensor, valid: torch.Tensor, label_t: torch.Tensor) -> None:
        """All (H, W) (or batched): predictions int64, valid bool, label with 255 = ignore."""
        ignore = torch.full_like(label_t, IGNORE)
        self.conf["predconsis"] += confusion(warped_k, torch.where(valid, pred_t, ignore), self.c)
        labelled = torch.where(valid, label_t, ignore)
        self.conf["warped"] += confusion(warped_k, labelled, self.c)
        agree = valid & (warped_k == pred_t)
        self.conf["consistency"] += confusion(pred_t, torch.where(agree, label_t, ignore), self.c)
        is_labelled = labelled != IGNORE
        self.retained[0] += int((agree & is_labelled).sum())
        self.retained[1] += int(is_labelled.sum())

    def all_reduce(self, d) -> None:
        """Sum the counts over every process of `d` (a `vdatrain.distributed.Dist`): sharded evaluation."""
        self.conf = {name: d.sum(conf) for name, conf in self.conf.items()}
        self.retained = [int(v) for v in d.sum(torch.tensor(self.retained, dtype=torch.int64))]

    def result(self, evaluated: list[int], protocol: str = "standard") -> dict:
        """Percentages: predconsis_miou, warped_miou, warped_acc, warped_acc_precision, consistency_miou,
        consistency_acc, consistency_acc_precision, retained."""
        out = {}
        for name, conf in self.conf.items():
            out[f"{name}_miou"] = miou(conf.numpy(), evaluated, protocol)
            if name != "predconsis":
                out[f"{name}_acc"] = class_accuracy(conf.numpy(), evaluated, protocol)
                out[f"{name}_acc_precision"] = class_accuracy(conf.numpy(), evaluated, protocol, "precision")
        out["retained"] = 100 * self.retained[0] / max(self.retained[1], 1)
        return out


def class_accuracy(conf: np.ndarray, evaluated: list[int], protocol: str = "standard", kind: str = "recall") -> float:
    """Mean over evaluated classes of TP / labelled pixels ("recall") or TP / predicted pixels ("precision"),
    in percent, over the classes with a non-zero denominator. Pixels labelled with a non-evaluated class are
    left out; under "unifiedvideoda" also those predicted as one."""
    conf = np.asarray(conf, dtype=np.float64)
    rows = conf[evaluated]  # labelled with an evaluated class
    if protocol == "unifiedvideoda":
        rows = rows[:, evaluated]  # ... and predicted as one
        tp = np.diag(rows)
        predicted = rows.sum(0)
    else:
        tp = rows[np.arange(len(evaluated)), evaluated]
        predicted = rows[:, evaluated].sum(0)
    total = rows.sum(1) if kind == "recall" else predicted
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.nanmean(np.where(total > 0, tp / total, np.nan)) * 100)
