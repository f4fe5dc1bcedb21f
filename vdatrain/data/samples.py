"""Training samples from a flowprep store: one crop per sample, shared by its frames, label, flows and masks.

Deterministic: the crop of sample k in epoch e depends only on (seed, e, k), so a
resumed run and any number of DataLoader workers see the same data. Workers
receive a reader that pickles as its store path and maps chunk files themselves
(safe with fork and spawn). Store views are read-only; every array returned here
is a fresh copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from flowprep.store import StoreReader, flow_part
from vdatrain.data.geometry import CropBox, class_ratio_ok, margin_mask, random_box

IMAGENET_MEAN = np.array([123.675, 116.28, 103.53], np.float32)  # RGB, 0..255
IMAGENET_STD = np.array([58.395, 57.12, 57.375], np.float32)


@dataclass
class SampleSpec:
    store: str
    crop: tuple[int, int] = (512, 512)  # (h, w) after resizing
    scale: float = 1.0  # resize factor applied before cropping (VIPER 4/3, Synthia 2 in the paper)
    offsets: tuple[int, ...] = (0,)  # frames returned, relative to the labelled frame t
    flows: tuple[str, ...] = ()  # stored flow pairs returned (with their validity)
    max_class_ratio: float | None = None  # source crops: retry until no class covers more than this
    crop_retries: int = 10
    flip_p: float = 0.5
    margins: bool = False  # return the pseudo-label margin mask (Cityscapes targets)
    seed: int = 0
    labels: bool = True  # False for unlabelled target training samples
    rare_min_pixels: float = 0  # rare class sampling: the crop must hold more pixels of the drawn class
    rare_retries: int = 10
    verify: bool = False  # check each chunk against its checksum record on first read (StoreReader)


def normalise(rgb: np.ndarray) -> torch.Tensor:
    """(h, w, 3) uint8 RGB -> (3, h, w) float32, ImageNet mean/std."""
    return torch.from_numpy(((rgb.astype(np.float32) - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1).copy())


def normalise_batch(images: torch.Tensor) -> torch.Tensor:
    """(..., h, w, 3) uint8 RGB -> (..., 3, h, w) float32, ImageNet mean/std, on `images`' device: the loader
    delivers frames as they are stored (a quarter of the bytes, no float work on the CPU) and the training step
    normalises them where it runs; the same arithmetic as `normalise`, so the same values."""
    mean = torch.from_numpy(IMAGENET_MEAN).to(images.device)
    std = torch.from_numpy(IMAGENET_STD).to(images.device)
    return ((images.float() - mean) / std).movedim(-1, -3).contiguous()


class StoreSamples(torch.utils.data.Dataset):
    """Item k -> dict:
    - "image": (F, h, w, 3) uint8 RGB, frames in `offsets` order (`normalise_batch` on the device makes the
      model's input)
    - "label": (h, w) int64 trainIds, 255 = ignore (if `labels`)
    - "flow/<pair>": (2, h, w) float32 pixels (u, v) in crop coordinates; "valid/<pair>": (h, w) bool
    - "margin": (h, w) float32 1/0 (if `margins`)
    - "index", "id", "box": the store sample and the crop (scale, y0, x0, h, w, flip)
    """

    def __init__(self, spec: SampleSpec):
        self.spec = spec
        self.reader = StoreReader(spec.store, verify=spec.verify)
        usable = self.reader.complete().copy()
        why = np.where(usable, "", "incomplete in the store (no checksum record)").astype(object)
        for pair in spec.flows:
            flow_ok = self.reader.complete(flow_part(pair))
            why[usable & ~flow_ok] = f"flow {pair} incomplete (no checksum record)"
            usable &= flow_ok
        self.indices = np.flatnonzero(usable).tolist()
        # what training leaves out, with the reason: logged by `vdatrain fit`, never dropped silently
        self.skipped = {self.reader.sample_ids[i]: str(why[i]) for i in np.flatnonzero(~usable)}
        self._margin = margin_mask(self.reader.resolution) if spec.margins else None

    def class_counts(self) -> np.ndarray:
        """(len(self), C) int64 pixel counts per class of each item's label (native resolution)."""
        return np.stack([np.asarray(self.reader.class_counts(i)) for i in self.indices])

    def __len__(self) -> int:
        return len(self.indices)

    def box(self, k: int, epoch: int, rare_class: int | None = None) -> tuple[CropBox, np.ndarray | None]:
        """The crop of item k in `epoch`, and its label when a search read it.

        Source crops are redrawn (up to `crop_retries` times) until no class covers more than
        `max_class_ratio`; if none qualifies the last checked draw is kept (mmseg uses one more,
        unchecked draw). With `rare_class` (rare class sampling), that whole draw is repeated up to
        `rare_retries` times until the crop holds more than `rare_min_pixels` pixels of the class.
        """
        s, r = self.spec, self.reader
        rng = np.random.default_rng([s.seed, epoch, k])
        for _ in range(s.rare_retries if rare_class is not None else 1):
            box, label = self._ratio_box(rng, k)
            if rare_class is None:
                return box, label
            if label is None:
                window = box.native_window(*r.resolution)
                label = box.sample(r.label(self.indices[k], 0, window), window, nearest=True)
            if np.count_nonzero(label == rare_class) > s.rare_min_pixels:
                break
        return box, label

    def _ratio_box(self, rng: np.random.Generator, k: int) -> tuple[CropBox, np.ndarray | None]:
        s, r = self.spec, self.reader
        box = random_box(rng, r.resolution, s.scale, s.crop, s.flip_p)
        if s.max_class_ratio is None or not s.labels:
            return box, None
        for attempt in range(s.crop_retries):
            window = box.native_window(*r.resolution)
            label = box.sample(r.label(self.indices[k], 0, window), window, nearest=True)
            if class_ratio_ok(label, s.max_class_ratio) or attempt == s.crop_retries - 1:
                return box, label
            box = random_box(rng, r.resolution, s.scale, s.crop, s.flip_p)
        return box, None

    def __getitem__(self, k: int) -> dict:
        return self.draw(k, epoch=0)  # as a plain Dataset: the crops of epoch 0 (training draws by iteration)

    def draw(self, k: int, rare_class: int | None = None, *, epoch: int) -> dict:
        """Item k with the crop of `epoch` (the training loop passes the iteration)."""
        s, r, i = self.spec, self.reader, self.indices[k]
        box, label = self.box(k, epoch, rare_class)
        window = box.native_window(*r.resolution)
        out = {
            "image": torch.from_numpy(np.stack([box.sample(r.frame(i, o, window), window) for o in s.offsets])),
            "index": i, "id": r.sample_ids[i],
            "box": (box.scale, box.y0, box.x0, box.h, box.w, box.flip),
        }
        if s.labels:
            if label is None:
                label = box.sample(r.label(i, 0, window), window, nearest=True)
            out["label"] = torch.from_numpy(label.astype(np.int64))
        for pair in s.flows:
            out[f"flow/{pair}"] = torch.from_numpy(box.flow(r.flow(i, pair, window), window).transpose(2, 0, 1).copy())
            out[f"valid/{pair}"] = torch.from_numpy(box.sample(r.flow_valid(i, pair, window), window, nearest=True))
        if self._margin is not None:
            y0, y1, x0, x1 = window
            out["margin"] = torch.from_numpy(box.sample(self._margin[y0:y1, x0:x1], window, nearest=True))
        return out
