"""Evaluation: sliding-window predictions over a store, a confusion matrix, mIoU under both protocols.

Images: the store's `eval_image` extra when it has one (BDDVid: the original BDD10k
image, which the labels match exactly), else frame t. Outputs: per-class IoU as
CSV and Markdown, the confusion matrix, and for the first few samples a picture
(image | prediction over the image | ground truth) and the colourised prediction.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import torch

from flowprep.manifest import load_classes
from flowprep.progress import Progress
from flowprep.store import StoreReader, flow_part, pair_name, pair_offsets
from vdatrain.data.samples import normalise
from vdatrain.inference import slide_logits
from vdatrain.metrics.miou import PROTOCOLS, confusion, iou_per_class
from vdatrain.metrics.temporal import TemporalMeter
from vdatrain.models.accel import ACCEL
from vdatrain.warp import warp


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


def save_refinement_picture(out_dir: Path, model, reader: StoreReader, i: int, refine_spec, num_classes: int,
                            window, stride, device) -> bool:
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
    single = model.model if isinstance(model, ACCEL) else model  # the teacher predicts frames one at a time

    def probs(rgb):
        return torch.softmax(slide_logits(single, normalise(rgb)[None].to(device), num_classes, window, stride), 1)

    rgb_t = np.asarray(reader.frame(i, 0))
    p_t, p_k = probs(rgb_t), probs(np.asarray(reader.frame(i, partner)))
    flow = torch.from_numpy(np.array(reader.flow(i, pair))).permute(2, 0, 1)[None].to(device)
    valid = torch.from_numpy(np.array(reader.flow_valid(i, pair)))[None].to(device)
    warped, ok = warp(p_k, flow, valid, mode="nearest")
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


def temporal_pairs(reader: StoreReader) -> list[str]:
    """Flow pairs from frame t to another stored frame t+k: the temporal metrics' frame distances."""
    return [name for name, p in reader.flow_pairs.items()
            if p["from_offset"] == 0 and p["to_offset"] in reader.frame_offsets]


def frame_prediction(model, reader: StoreReader, i: int, offset: int, num_classes: int, window, stride, device,
                     rgb: np.ndarray | None = None) -> torch.Tensor | None:
    """(H, W) int64 prediction of the frame at `offset` of sample i (`rgb` replaces that frame's pixels).

    A two-frame (ACCEL) model also reads the frame its pair names, relative to this one (bwd_1 at
    offset -1: frame -2 through flow bwd_1_at_m1); None when the store lacks that frame or flow."""
    if rgb is None:
        rgb = np.asarray(reader.frame(i, offset))
    if not isinstance(model, ACCEL):
        return predict(model, rgb, num_classes, window, stride, device)
    partner = offset + pair_offsets(model.pair)[1]  # ACCEL pairs start at frame t (the recipe checks it)
    pair = pair_name(offset, partner)
    if partner not in reader.frame_offsets or pair not in reader.flow_pairs or not reader.complete(flow_part(pair))[i]:
        return None

    def image(a: np.ndarray) -> torch.Tensor:
        return normalise(a)[None].to(device)

    def slide(single, x: torch.Tensor) -> torch.Tensor:
        return slide_logits(single, x, num_classes, window, stride)

    flow = torch.from_numpy(np.array(reader.flow(i, pair))).permute(2, 0, 1)[None].to(device)
    valid = torch.from_numpy(np.array(reader.flow_valid(i, pair)))[None].to(device)
    logits = model.predict_pair(slide, image(rgb), image(np.asarray(reader.frame(i, partner))), flow, valid)
    return logits.argmax(1)[0].cpu()


@torch.inference_mode()
def evaluate(model: torch.nn.Module, store, window, stride, num_classes: int = 19, device: str = "cpu",
             progress: bool = False, pictures: int = 0, picture_dir=None,
             temporal: dict | None = None, skipped: list | None = None, limit: int | None = None,
             verify: bool = False, dist=None, refine=None) -> np.ndarray:
    """(C, C) confusion matrix of `model` over the complete samples of `store`; pictures of the first
    `pictures` samples go to `picture_dir`. With a `temporal` dict, also the temporal metrics: it is
    filled with {pair: TemporalMeter} for every pair of `temporal_pairs` (one more prediction per
    pair and image: frame t+k, warped to t by nearest pixel through the stored flow and its
    validity). Temporal metrics use video frame t (BDDVid: not the BDD10k image).

    A two-frame (ACCEL) model is evaluated on frame t and its partner frame (dual-frame); samples
    or temporal pairs it cannot predict (the store lacks the partner's frame or flow) are appended
    to `skipped` as "<sample id>" or "<sample id>/<pair>" rather than silently dropped.

    Samples (or temporal pairs) the store holds incompletely (no checksum record) are listed in
    `skipped` too, as "<sample id> (incomplete ...)". `verify`: check every chunk against its record
    on first read (a corrupt chunk is a StoreError naming the file).

    `limit`: only the first `limit` complete samples (`vdatrain check` evaluates one).

    `refine` (a recipe's adapt.refine): the pictured samples also get `refine_<id>.png`
    (`save_refinement_picture`).

    `dist` (a `vdatrain.distributed.Dist` of several processes): each process predicts every world-th
    image and the counts are summed over the processes, so every process returns the result of the
    whole set (integer counts: identical to one process); `skipped` lists every process's skips, in order."""
    reader = StoreReader(store, verify=verify)
    skipped = [] if skipped is None else skipped
    skipped += [f"{reader.sample_ids[i]} (incomplete in the store: no checksum record)"
                for i in np.flatnonzero(~reader.complete())]
    pairs = temporal_pairs(reader) if temporal is not None else []
    for pair in pairs:
        temporal[pair] = TemporalMeter(num_classes)
    use_eval_image = "eval_image" in reader.attrs.get("extras", {})
    model.eval().to(device)
    conf = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    at = partial(frame_prediction, model, reader, num_classes=num_classes, window=window, stride=stride, device=device)
    order = list(enumerate(np.flatnonzero(reader.complete())[:limit]))  # (n, sample index): n picks the pictures
    mine = dist.share(order) if dist is not None else order
    local_skips: list[tuple[int, str]] = []
    for n, i in Progress(len(mine), "eval", "image", enabled=progress).each(mine):
        sample = reader.sample_ids[i]
        rgb = np.asarray(reader.extra(i, "eval_image") if use_eval_image else reader.frame(i, 0))
        pred, label = at(i, 0, rgb=rgb), torch.from_numpy(np.array(reader.label(i, 0)))
        if pred is None:
            local_skips.append((n, sample))
            continue
        conf += confusion(pred, label, num_classes)
        if n < pictures:
            save_pictures(Path(picture_dir), sample, rgb, pred.numpy().astype(np.uint8), label.numpy())
            if refine is not None:
                save_refinement_picture(Path(picture_dir), model, reader, i, refine, num_classes, window, stride,
                                        device)
        pairs_here = [pair for pair in pairs if reader.complete(flow_part(pair))[i]]
        local_skips += [(n, f"{sample}/{pair} (incomplete flow: no checksum record)") for pair in pairs
                        if pair not in pairs_here]
        if pairs_here and use_eval_image:  # the flows start at video frame t, not at the BDD10k image
            pred = at(i, 0)
        for pair in pairs_here:
            pred_k = at(i, reader.flow_pairs[pair]["to_offset"])
            if pred_k is None:
                local_skips.append((n, f"{sample}/{pair}"))
                continue
            flow = torch.from_numpy(np.array(reader.flow(i, pair))).permute(2, 0, 1)[None]
            valid = torch.from_numpy(np.array(reader.flow_valid(i, pair)))[None]
            warped, ok = warp(pred_k[None, None], flow, valid, mode="nearest")
            temporal[pair].add(pred, warped[0, 0], ok[0], label)
    if dist is not None and dist.world > 1:
        conf = dist.sum(conf)
        for meter in temporal.values() if temporal is not None else ():
            meter.all_reduce(dist)
        local_skips = [s for part in dist.gather(local_skips) for s in part]
    skipped += [s for _, s in sorted(local_skips)]
    return conf.numpy()


def predict(model, rgb: np.ndarray, num_classes: int, window, stride, device) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (H, W) int64 prediction by sliding windows."""
    return slide_logits(model, normalise(rgb)[None].to(device), num_classes, window, stride).argmax(1)[0].cpu()


def report(conf: np.ndarray, class_set: str, out_dir=None, temporal: dict | None = None, run: dict | None = None,
           skipped: list | None = None) -> dict:
    """Per-class IoU and mIoU (percent) for each protocol, and the temporal metrics per flow pair and
    protocol ({pair: {protocol: metrics}}); written as CSV, Markdown and JSON when `out_dir`. `run` (recipe name, label,
    shift, protocol: what `vdatrain report` tabulates) and `skipped` samples go into the JSON."""
    classes = load_classes()
    evaluated = list(classes.evaluated[class_set])
    names = [classes.names[c] for c in evaluated]
    ious = {p: iou_per_class(conf, evaluated, p) * 100 for p in PROTOCOLS}
    result = {"classes": class_set, "miou": {p: float(np.nanmean(v)) for p, v in ious.items()},
              "per_class": {p: dict(zip(names, (None if np.isnan(x) else round(float(x), 2) for x in v)))
                            for p, v in ious.items()}}
    if temporal:
        # a pair no sample could serve (all skipped) has nothing to report
        result["temporal"] = {pair: {p: meter.result(evaluated, p) for p in PROTOCOLS}
                              for pair, meter in temporal.items() if meter.retained[1]}
    if run:
        result["run"] = run
    if skipped:
        result["skipped"] = list(skipped)
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
