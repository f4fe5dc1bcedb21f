"""Evaluation over a store: predict every complete sample, accumulate confusion matrices.

Images: the store's `eval_image` extra when it has one (BDDVid: the original BDD10k
image, which the labels match exactly), else frame t.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from flowprep.progress import Progress
from flowprep.store import StoreReader, flow_part
from vdatrain.evaluation.predict import frame_prediction, stored_pair
from vdatrain.evaluation.write import save_pictures, save_refinement_picture
from vdatrain.metrics.miou import confusion
from vdatrain.metrics.temporal import TemporalMeter
from vdatrain.models.warp import warp


def temporal_pairs(reader: StoreReader) -> list[str]:
    """Flow pairs from frame t to another stored frame t+k: the temporal metrics' frame distances."""
    return [name for name, p in reader.flow_pairs.items()
            if p["from_offset"] == 0 and p["to_offset"] in reader.frame_offsets]


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

    def at(i: int, offset: int, rgb=None):
        return frame_prediction(model, reader, i, offset, window, stride, device, rgb=rgb)

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
                save_refinement_picture(Path(picture_dir), model, reader, i, refine, window, stride, device)
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
            warped, ok = warp(pred_k[None, None], *stored_pair(reader, i, pair, "cpu"), mode="nearest")
            temporal[pair].add(pred, warped[0, 0], ok[0], label)
    if dist is not None and dist.world > 1:
        conf = dist.sum(conf)
        for meter in temporal.values() if temporal is not None else ():
            meter.all_reduce(dist)
        local_skips = [s for part in dist.gather(local_skips) for s in part]
    skipped += [s for _, s in sorted(local_skips)]
    return conf.numpy()
