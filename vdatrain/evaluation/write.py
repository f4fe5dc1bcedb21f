"""Evaluation outputs: per-class IoU (CSV, Markdown, JSON), the confusion matrix, and pictures.

`results(conf, ...)` turns a confusion matrix into per-class IoU and mIoU (percent) for each
protocol, with the temporal metrics; `write_results` writes them; `results_markdown` is the
table the CLI prints. Pictures: image | prediction | ground truth | error map per sample, and
what the flow refinement does to a pseudo-label.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from flowprep.manifest import load_classes
from flowprep.store import StoreReader, flow_part, pair_offsets
from vdatrain.evaluation.predict import image_tensor, stored_pair
from vdatrain.metrics.miou import PROTOCOLS, iou_per_class, miou
from vdatrain.models.warp import warp


def save_pictures(out_dir: Path, sample_id: str, rgb: np.ndarray, pred: np.ndarray, label: np.ndarray) -> None:
    """`<id>.png`: image | prediction | ground truth | error map, with the classes' legend (600 px panels);
    `<id>_pred.png`: the prediction alone in the Cityscapes palette, at the image's size. (H, W, 3) uint8 RGB,
    (H, W) trainIds."""
    from flowprep.figures import save
    from flowprep.viz import colourise, write_picture
    from vdatrain.figures import prediction_figure

    out_dir.mkdir(parents=True, exist_ok=True)
    save(prediction_figure(rgb, pred, label, sample_id), out_dir / f"{sample_id}.png")
    write_picture(out_dir / f"{sample_id}_pred.png", colourise(pred))


def save_refinement_picture(out_dir: Path, model, reader: StoreReader, i: int, refine_spec, window, stride,
                            device) -> bool:
    """`refine_<id>.png`: what the recipe's flow refinement does to the pseudo-label of sample i, with `model`
    as the teacher (single-frame sliding predictions of frame t and of the pair's frame, the latter's class
    probabilities warped to t by the stored flow, nearest pixel, then `refine` as in training; every pixel
    weighs 1). False when the store lacks the pair's frame or flow for this sample."""
    from flowprep.figures import save
    from vdatrain.adapt.refine import refine
    from vdatrain.figures import refinement_figure

    pair = refine_spec.pair
    partner = pair_offsets(pair)[1]
    if pair not in reader.flow_pairs or partner not in reader.frame_offsets or not reader.complete(flow_part(pair))[i]:
        return False

    def probs(rgb):  # without a pair, a two-frame model predicts frames one at a time, as the teacher does here
        return torch.softmax(model.predict(image_tensor(rgb, device), window, stride), 1)

    rgb_t = np.asarray(reader.frame(i, 0))
    p_t, p_k = probs(rgb_t), probs(np.asarray(reader.frame(i, partner)))
    warped, ok = warp(p_k, *stored_pair(reader, i, pair, device), mode="nearest")
    conf_t, label_t = p_t.max(1)
    conf_k, label_k = warped.max(1)
    ones = torch.ones_like(conf_t)
    truth = torch.from_numpy(np.array(reader.label(i, 0)).astype(np.int64))[None].to(device)
    label, _ = refine(refine_spec.strategy, label_t, conf_t, ones, label_k, conf_k, ones, ok, refine_spec.invalid,
                      refine_spec.weight, truth)
    as_np = lambda t: t[0].cpu().numpy().astype(np.uint8)  # noqa: E731
    sid = reader.sample_ids[i]
    out_dir.mkdir(parents=True, exist_ok=True)
    save(refinement_figure(rgb_t, as_np(label_t), as_np(label_k), ok[0].cpu().numpy(), as_np(label),
                           f"{sid}: {refine_spec.strategy} refinement with {pair} ({refine_spec.invalid})"),
         out_dir / f"refine_{sid}.png")
    return True


def results(conf: np.ndarray, class_set: str, temporal: dict | None = None, run: dict | None = None,
            skipped: list | None = None) -> dict:
    """Per-class IoU and mIoU (percent) for each protocol, and the temporal metrics per flow pair and protocol
    ({pair: {protocol: metrics}}); `run` (recipe name, label, shift, protocol: what `vdatrain report`
    tabulates) and `skipped` samples are kept as given."""
    classes = load_classes()
    evaluated = list(classes.evaluated[class_set])
    names = [classes.names[c] for c in evaluated]
    out = {"classes": class_set, "miou": {p: miou(conf, evaluated, p) for p in PROTOCOLS},
           "per_class": {p: dict(zip(names, (None if np.isnan(x) else round(float(x), 2)
                                             for x in iou_per_class(conf, evaluated, p) * 100))) for p in PROTOCOLS}}
    if temporal:
        # a pair no sample could serve (all skipped) has nothing to report
        out["temporal"] = {pair: {p: meter.result(evaluated, p) for p in PROTOCOLS}
                           for pair, meter in temporal.items() if meter.retained[1]}
    if run:
        out["run"] = run
    if skipped:
        out["skipped"] = list(skipped)
    return out


def write_results(result: dict, conf: np.ndarray, out_dir) -> None:
    """results.json, per_class.csv, per_class.md and confusion.npy in `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "confusion.npy", conf)
    (out / "results.json").write_text(json.dumps(result, indent=2))
    per_class = result["per_class"]
    (out / "per_class.csv").write_text("class," + ",".join(PROTOCOLS) + "\n" + "".join(
        f"{name}," + ",".join("" if per_class[p][name] is None else f"{per_class[p][name]:.2f}" for p in PROTOCOLS)
        + "\n" for name in per_class[PROTOCOLS[0]]))
    (out / "per_class.md").write_text(results_markdown(result))


def results_markdown(result: dict) -> str:
    protocols = list(result["miou"])
    lines = ["| class | " + " | ".join(f"IoU ({p})" for p in protocols) + " |", "|---|" + "---:|" * len(protocols)]
    for name in result["per_class"][protocols[0]]:
        cells = [result["per_class"][p][name] for p in protocols]
        lines.append(f"| {name} | " + " | ".join("n/a" if c is None else f"{c:.1f}" for c in cells) + " |")
    lines.append("| **mIoU** | " + " | ".join(f"**{result['miou'][p]:.1f}**" for p in protocols) + " |")
    if result.get("temporal"):
        lines += ["", "| flow pair | protocol | PredConsis mIoU | Warped mIoU | Warped Acc (recall) | "
                      "Warped Acc (precision, the reference's) | Consistency mIoU | Consistency Acc (recall) | "
                      "retained % |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for pair, by_protocol in result["temporal"].items():
            for p in protocols:
                t = by_protocol[p]
                lines.append(f"| {pair} | {p} | " + " | ".join(f"{t[k]:.1f}" for k in (
                    "predconsis_miou", "warped_miou", "warped_acc", "warped_acc_precision", "consistency_miou",
                    "consistency_acc", "retained")) + " |")
    return "\n".join(lines) + "\n"
