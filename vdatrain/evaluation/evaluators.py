"""Evaluators: one metric or output each, fed one `Sample` at a time by `vdatrain.evaluation.loop.score`.

Every evaluator has
- `process(sample)`: take one image (its prediction, label, and whatever else it asks the sample for);
- `reduce(dist)`: sum its counts over the processes of a sharded evaluation (integer counts: exact);
- `result()`: its part of the results dict.

`Confusion` (mIoU per class protocol), `Temporal` (the paper's temporal metrics per stored flow pair),
`Pictures` (image | prediction | truth | errors of the first images). A new metric is one class here;
a method's own pictures live with the method (e.g. `vdatrain.adapt.refine.RefinementPictures`) and are
passed in by the caller.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from flowprep.manifest import load_classes
from flowprep.store import StoreReader, flow_part
from vdatrain.metrics.miou import PROTOCOLS, confusion, iou_per_class, miou
from vdatrain.metrics.temporal import TemporalMeter
from vdatrain.models.warp import warp


def evaluated_classes(class_set: str) -> tuple[list[int], list[str]]:
    """The trainIds a class set evaluates (`all19`, `viper`, `synthia-seq`) and their names."""
    classes = load_classes()
    evaluated = list(classes.evaluated[class_set])
    return evaluated, [classes.names[c] for c in evaluated]


class Confusion:
    """The (C, C) confusion matrix [label, prediction] of the images evaluated -> mIoU and IoU per class under
    each protocol (percent; a class absent from labels and predictions is None)."""

    def __init__(self, num_classes: int, class_set: str):
        self.conf = torch.zeros(num_classes, num_classes, dtype=torch.int64)
        self.num_classes, self.class_set = num_classes, class_set

    def process(self, sample) -> None:
        self.conf += confusion(sample.prediction, sample.label, self.num_classes)

    def reduce(self, dist) -> None:
        self.conf = dist.sum(self.conf)

    def result(self) -> dict:
        evaluated, names = evaluated_classes(self.class_set)
        conf = self.conf.numpy()
        return {"classes": self.class_set, "miou": {p: miou(conf, evaluated, p) for p in PROTOCOLS},
                "per_class": {p: dict(zip(names, (None if np.isnan(x) else round(float(x), 2)
                                                  for x in iou_per_class(conf, evaluated, p) * 100)))
                              for p in PROTOCOLS},
                "labelled_pixels": int(conf.sum())}


def temporal_pairs(reader: StoreReader) -> list[str]:
    """Flow pairs from frame t to another stored frame t+k: the temporal metrics' frame distances."""
    return [name for name, p in reader.flow_pairs.items()
            if p["from_offset"] == 0 and p["to_offset"] in reader.frame_offsets]


class Temporal:
    """PL-PredConsis, PL-Warped and PL-Consistency for every pair of `temporal_pairs`: the prediction of frame
    t+k (one more prediction per pair and image) warped to t by nearest pixel through the stored flow and its
    validity, against the prediction and the label of t. Uses video frame t (BDDVid: not the BDD10k image)."""

    def __init__(self, reader: StoreReader, num_classes: int, class_set: str):
        self.meters = {pair: TemporalMeter(num_classes) for pair in temporal_pairs(reader)}
        self.class_set = class_set

    def process(self, sample) -> None:
        complete = [pair for pair in self.meters if sample.reader.complete(flow_part(pair))[sample.index]]
        sample.skips += [f"{sample.id}/{pair} (incomplete flow: no checksum record)" for pair in self.meters
                         if pair not in complete]
        for pair in complete:
            pred_k = sample.predict_frame(sample.reader.flow_pairs[pair]["to_offset"])
            if pred_k is None:
                sample.skips.append(f"{sample.id}/{pair}")
                continue
            flow, valid = sample.flow(pair)
            warped, ok = warp(pred_k[None, None].to(flow.device), flow, valid, mode="nearest")
            self.meters[pair].add(sample.predict_frame(0), warped[0, 0].cpu(), ok[0].cpu(), sample.label)

    def reduce(self, dist) -> None:
        for meter in self.meters.values():
            meter.all_reduce(dist)

    def result(self) -> dict:
        evaluated, _ = evaluated_classes(self.class_set)
        # a pair no sample could serve (all skipped) has nothing to report
        return {"temporal": {pair: {p: meter.result(evaluated, p) for p in PROTOCOLS}
                             for pair, meter in self.meters.items() if meter.retained[1]}}


class Pictures:
    """`<id>.png` (image | prediction | ground truth | error map, with the classes' legend) and `<id>_pred.png`
    (the prediction in the Cityscapes palette) for the first `count` images of the evaluation order, each
    written by the process that predicted it. `title`: what the pictures name (run and model)."""

    def __init__(self, out_dir, count: int, title: str = "", evaluated: list[int] | None = None):
        self.out_dir, self.count, self.title, self.evaluated = Path(out_dir), count, title, evaluated

    def process(self, sample) -> None:
        if sample.n >= self.count:
            return
        from flowprep.figures import save
        from flowprep.viz import colourise, write_picture
        from vdatrain.figures import prediction_figure

        self.out_dir.mkdir(parents=True, exist_ok=True)
        pred = sample.prediction.numpy().astype(np.uint8)
        title = f"{sample.id}" + (f": {self.title}" if self.title else "")
        save(prediction_figure(sample.rgb, pred, sample.label.numpy(), title, self.evaluated),
             self.out_dir / f"{sample.id}.png")
        write_picture(self.out_dir / f"{sample.id}_pred.png", colourise(pred))

    def reduce(self, dist) -> None:
        pass

    def result(self) -> dict:
        return {}
