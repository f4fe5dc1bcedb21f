"""The loop over an evaluation store: predict each complete sample once, hand it to every evaluator.

    score(model, reader, evaluators, window, stride, device, dist) -> skipped samples

A `Sample` is one image of the store as the evaluators see it: the image evaluated (the store's
`eval_image` extra when it has one, BDDVid's original BDD10k image, which the labels match exactly;
else frame t), its label, and predictions made on demand and kept (frame t of the video, the frames
at other offsets for the temporal metrics). Evaluators (`vdatrain.evaluation.evaluators`) take each
sample (`process`), sum their counts over the processes (`reduce`) and give their part of the result
(`result`): a new metric is one evaluator.

Samples the model cannot predict (a two-frame model whose partner frame or flow is missing) or the
store holds incompletely are listed as skipped, never dropped silently. Under several processes
(`dist`) each predicts every world-th image; skips are gathered in image order. While the model
predicts one image, a thread reads the next one from the store.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from flowprep.progress import Progress
from flowprep.store import StoreReader
from vdatrain.evaluation.predict import Predictor, stored_pair


class Sample:
    """Image `n` of the evaluation order: store sample `index` (`id`), with `rgb` (H, W, 3) uint8 and `label`
    (H, W) int64 of the image evaluated; predictions (H, W) int64 made on demand and kept. `image_is_frame`:
    the image evaluated is video frame t (not a separate `eval_image`)."""

    def __init__(self, n: int, index: int, reader: StoreReader, rgb: np.ndarray, label: np.ndarray, predictor,
                 image_is_frame: bool):
        self.n, self.index, self.reader, self.predictor = n, index, reader, predictor
        self.id = reader.sample_ids[index]
        self.rgb, self.label = rgb, torch.from_numpy(label.astype(np.int64))
        self.image_is_frame = image_is_frame
        self._frames = {0: rgb} if image_is_frame else {}
        self._predictions: dict = {}
        self.skips: list[str] = []  # what evaluators could not do for this sample ("<id>/<pair> (why)")

    def frame(self, offset: int) -> np.ndarray:
        """The stored video frame at `offset` (H, W, 3) uint8."""
        if offset not in self._frames:
            self._frames[offset] = np.asarray(self.reader.frame(self.index, offset))
        return self._frames[offset]

    @property
    def prediction(self) -> torch.Tensor | None:
        """(H, W) int64 classes of the image evaluated; None when the model cannot predict it."""
        return self._predict("image", 0, self.rgb)

    def predict_frame(self, offset: int) -> torch.Tensor | None:
        """(H, W) int64 classes of the video frame at `offset` (a two-frame model with its partner frame)."""
        if offset == 0 and self.image_is_frame:
            return self.prediction
        return self._predict(("frame", offset), offset, self.frame(offset))

    def _predict(self, key, offset: int, rgb: np.ndarray) -> torch.Tensor | None:
        if key not in self._predictions:
            logits = self.predictor.logits(self.reader, self.index, offset, rgb)
            self._predictions[key] = None if logits is None else logits.argmax(1)[0].cpu()
        return self._predictions[key]

    def single_frame_probs(self, offset: int) -> torch.Tensor:
        """(1, C, H, W) softmax of the video frame at `offset` predicted on its own (no partner frame)."""
        return torch.softmax(self.predictor.logits(self.reader, self.index, offset, self.frame(offset),
                                                   single_frame=True).float(), 1)

    def flow(self, pair: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The stored flow (1, 2, H, W) in pixels and its validity (1, H, W) of the pair, on the device."""
        return stored_pair(self.reader, self.index, pair, self.predictor.device)


def _read(reader: StoreReader, i: int, use_eval_image: bool) -> tuple[np.ndarray, np.ndarray]:
    rgb = np.asarray(reader.extra(i, "eval_image") if use_eval_image else reader.frame(i, 0))
    return np.array(rgb), np.array(reader.label(i, 0))


@torch.inference_mode()
def score(predictor: Predictor, reader: StoreReader, evaluators: list, dist=None, limit: int | None = None,
          progress: bool = False) -> list[str]:
    """Run every complete sample of `reader` (the first `limit`) through the model of `predictor` and
    `evaluators`, summed over the processes of `dist`; returns the skipped samples (every process's, in image
    order)."""
    skipped = [f"{reader.sample_ids[i]} (incomplete in the store: no checksum record)"
               for i in np.flatnonzero(~reader.complete())]
    use_eval_image = "eval_image" in reader.attrs.get("extras", {})
    predictor.model.eval().to(predictor.device)
    order = list(enumerate(np.flatnonzero(reader.complete())[:limit]))  # (n, sample index): n picks the pictures
    mine = dist.deal(order) if dist is not None else order
    local_skips: list[tuple[int, str]] = []
    with ThreadPoolExecutor(1) as pool:  # reads the next image while the model predicts this one
        ahead = pool.submit(_read, reader, mine[0][1], use_eval_image) if mine else None
        for k, (n, i) in Progress(len(mine), "eval", "image", enabled=progress).each(enumerate(mine)):
            rgb, label = ahead.result()
            ahead = pool.submit(_read, reader, mine[k + 1][1], use_eval_image) if k + 1 < len(mine) else None
            sample = Sample(n, i, reader, rgb, label, predictor, not use_eval_image)
            if sample.prediction is None:
                local_skips.append((n, sample.id))
                continue
            for ev in evaluators:
                ev.process(sample)
            local_skips += [(n, s) for s in sample.skips]
    if dist is not None and dist.world > 1:
        for ev in evaluators:
            ev.reduce(dist)
        local_skips = [s for part in dist.gather(local_skips) for s in part]
    return skipped + [s for _, s in sorted(local_skips)]
