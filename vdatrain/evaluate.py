"""Evaluation: sliding-window predictions over a store, a confusion matrix, mIoU under both protocols.

Images: the store's `eval_image` extra when it has one (BDDVid: the original BDD10k
image, which the labels match exactly), else frame t. Outputs: per-class IoU as
CSV and Markdown, and the confusion matrix, in the output folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from flowprep.manifest import load_classes
from flowprep.store import StoreReader
from vdatrain.data.samples import normalise
from vdatrain.inference import slide_logits
from vdatrain.metrics.miou import PROTOCOLS, confusion, iou_per_class


@torch.inference_mode()
def evaluate(model: torch.nn.Module, store, window, stride, num_classes: int = 19, device: str = "cpu",
             progress: bool = False) -> np.ndarray:
    """(C, C) confusion matrix of `model` over the complete samples of `store`."""
    reader = StoreReader(store)
    use_eval_image = "eval_image" in reader.attrs.get("extras", {})
    model.eval().to(device)
    conf = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    for i in tqdm(np.flatnonzero(reader.complete()), desc="eval", unit="image", disable=not progress):
        rgb = reader.extra(i, "eval_image") if use_eval_image else reader.frame(i, 0)
        image = normalise(np.asarray(rgb))[None].to(device)
        logits = slide_logits(model, image, num_classes, window, stride)
        label = torch.from_numpy(np.array(reader.label(i, 0)))
        conf += confusion(logits.argmax(1)[0].cpu(), label, num_classes)
    return conf.numpy()


def report(conf: np.ndarray, class_set: str, out_dir=None) -> dict:
    """Per-class IoU and mIoU (percent) for each protocol; written as CSV, Markdown and JSON when `out_dir`."""
    classes = load_classes()
    evaluated = list(classes.evaluated[class_set])
    names = [classes.names[c] for c in evaluated]
    ious = {p: iou_per_class(conf, evaluated, p) * 100 for p in PROTOCOLS}
    result = {"classes": class_set, "miou": {p: float(np.nanmean(v)) for p, v in ious.items()},
              "per_class": {p: dict(zip(names, (None if np.isnan(x) else round(float(x), 2) for x in v)))
                            for p, v in ious.items()}}
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / "confusion.npy", conf)
        (out / "results.json").write_text(json.dumps(result, indent=2))
        (out / "per_class.csv").write_text("class," + ",".join(PROTOCOLS) + "\n" + "".join(
            f"{n}," + ",".join("" if np.isnan(ious[p][k]) else f"{ious[p][k]:.2f}" for p in PROTOCOLS) + "\n"
            for k, n in enumerate(names)))
        (out / "per_class.md").write_text(markdown(result))
    return result


def markdown(result: dict) -> str:
    protocols = list(result["miou"])
    lines = ["| class | " + " | ".join(f"IoU ({p})" for p in protocols) + " |", "|---|" + "---:|" * len(protocols)]
    for name in result["per_class"][protocols[0]]:
        cells = [result["per_class"][p][name] for p in protocols]
        lines.append(f"| {name} | " + " | ".join("n/a" if c is None else f"{c:.1f}" for c in cells) + " |")
    lines.append("| **mIoU** | " + " | ".join(f"**{result['miou'][p]:.1f}**" for p in protocols) + " |")
    return "\n".join(lines) + "\n"
