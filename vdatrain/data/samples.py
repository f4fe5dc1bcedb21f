"""Training samples from a flowprep store: one crop per sample, shared by its frames, label, flows and masks.

Deterministic: the crop of sample k in epoch e depends only on (seed, e, k), so a
resumed run and any number of DataLoader workers see the same data. Workers
receive a reader that pickles as its store path and maps chunk files themselves
(safe with fork and spawn).

The loader does no resampling: `draw` picks a crop (searching it on the label when the
recipe asks), and `batch` copies each sample's native window once, straight from the
memory-mapped store into the batch, in its stored form (frames uint8, flows int16 fixed
point). `vdatrain.data.crops.crop_part` resizes, crops, flips and normalises on the device;
the label crops the search reads are made with the same geometry on the CPU (`label_crop`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from flowprep.store import StoreReader, flow_part
from vdatrain.data.crops import label_crop
from vdatrain.data.geometry import CropBox, Rect, class_ratio_ok, margin_bounds, random_box


@dataclass
class SampleSpec:
    store: str
    crop: tuple[int, int] = (512, 512)  # (h, w) after resizing
    scale: float = 1.0  # resize factor applied before cropping (VIPER 4/3, Synthia 2 in the paper)
    offsets: tuple[int, ...] = (0,)  # frames returned, relative to the labelled frame t
    flows: tuple[str, ...] = ()  # stored flow pairs returned (with their validity)
    max_class_ratio: float | None = None  # source crops: retry until no class covers more than this
    crop_retries: int = 10
    label_resize: str = "floor"  # nearest label resizing: OpenCV's resize (floor) or pixel centres
    flip_p: float = 0.5
    margins: bool = False  # return the pseudo-label margin mask (Cityscapes targets)
    seed: int = 0
    labels: bool = True  # False for unlabelled target training samples
    rare_min_pixels: float = 0  # rare class sampling: the crop must hold more pixels of the drawn class
    rare_retries: int = 10
    verify: bool = False  # check each chunk against its checksum record on first read (StoreReader)


@dataclass(frozen=True)
class Draw:
    """One sample's crop: the native window the loader copies and the box the device samples it with."""
    index: int  # store sample
    box: CropBox
    window: Rect  # native pixels (y0, y1, x0, x1) the box's sampling touches
    label: np.ndarray | None  # (h, w) uint8 crop of the label (when labels are used)


def _empty(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """A batch buffer; in a DataLoader worker it lives in shared memory, so handing it over copies nothing."""
    t = torch.empty(shape, dtype=dtype)
    return t.share_memory_() if torch.utils.data.get_worker_info() is not None else t


def _place(slot: np.ndarray, data: np.ndarray) -> None:
    """Copy a store window into the top-left of its batch slot (the one copy) and zero the rest: the padding is
    never sampled, but equal draws must give equal batches."""
    h, w = data.shape[:2]
    slot[:h, :w] = data
    slot[h:] = 0
    slot[:h, w:] = 0


class StoreSamples:
    """The training samples of one store, as `spec` crops them.

    `draw(k, epoch=e)` -> the `Draw` of item k in epoch e; `batch(draws)` -> the loader's batch:
    - "image": (B, F, Hw, Ww, 3) uint8 RGB native windows, frames in `offsets` order
    - "flow/<pair>": (B, Hw, Ww, 2) int16 stored fixed point (1/32 px); "valid/<pair>": (B, Hw, Ww) bool
    - "label": (B, h, w) uint8 trainIds of the crop, 255 = ignore (if `labels`)
    - "margin": the native rectangle (y0, y1, x0, x1) the pseudo-label margins keep, per sample (if `margins`)
    - "index", "id", "box" (the `CropBox`), "window" (the native `Rect` copied): per sample
    Windows sit at the top-left of (Hw, Ww), the largest window a crop can need; the rest is zero.
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
        self._margin = margin_bounds(self.reader.resolution) if spec.margins else None

    def class_counts(self) -> np.ndarray:
        """(len(self), C) int64 pixel counts per class of each item's label (native resolution)."""
        return np.stack([np.asarray(self.reader.class_counts(i)) for i in self.indices])

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def window_shape(self) -> tuple[int, int]:
        """(Hw, Ww): the largest native window a crop of this spec touches (`CropBox.native_window`)."""
        (h, w), s = self.reader.resolution, self.spec.scale
        crop = (min(self.spec.crop[0], round(h * s)), min(self.spec.crop[1], round(w * s)))
        return min(h, math.ceil((crop[0] - 1) / s) + 5), min(w, math.ceil((crop[1] - 1) / s) + 5)

    def box(self, k: int, epoch: int, rare_class: int | None = None) -> tuple[CropBox, np.ndarray | None]:
        """The crop of item k in `epoch`, and its label when a search read it.

        Source crops are checked up to `crop_retries` times, each failure drawing a new one, until no class
        covers more than `max_class_ratio`; after that many failures the last draw is kept unchecked (mmseg's
        `RandomCrop`: an 11th crop after 10). With `rare_class` (rare class sampling), that whole draw is
        checked up to `rare_retries` times likewise, until the crop holds more than `rare_min_pixels` pixels of
        the class (the reference's `get_rare_class_sample`). Retries 0: one draw, unchecked.
        """
        s = self.spec
        rng = np.random.default_rng([s.seed, epoch, k])
        box, label = self._ratio_box(rng, k)
        if rare_class is None:
            return box, label
        for _ in range(s.rare_retries):
            label = self._label(k, box) if label is None else label
            if np.count_nonzero(label == rare_class) > s.rare_min_pixels:
                break
            box, label = self._ratio_box(rng, k)
        return box, label

    def _label(self, k: int, box: CropBox) -> np.ndarray:
        window = box.native_window(*self.reader.resolution)
        return label_crop(self.reader.label(self.indices[k], 0, window), box, window, self.spec.label_resize,
                          self.reader.resolution)

    def _ratio_box(self, rng: np.random.Generator, k: int) -> tuple[CropBox, np.ndarray | None]:
        s, r = self.spec, self.reader
        box = random_box(rng, r.resolution, s.scale, s.crop, s.flip_p)
        if s.max_class_ratio is None or not s.labels:
            return box, None
        for _ in range(s.crop_retries):
            label = self._label(k, box)
            if class_ratio_ok(label, s.max_class_ratio):
                return box, label
            box = random_box(rng, r.resolution, s.scale, s.crop, s.flip_p)
        return box, None

    def draw(self, k: int, rare_class: int | None = None, *, epoch: int) -> Draw:
        """The crop of item k in `epoch` (the training loop passes the iteration), with its label crop."""
        s, r, i = self.spec, self.reader, self.indices[k]
        box, label = self.box(k, epoch, rare_class)
        window = box.native_window(*r.resolution)
        if s.labels and label is None:
            label = self._label(k, box)
        return Draw(i, box, window, label if s.labels else None)

    def batch(self, draws: list[Draw]) -> dict:
        """The loader batch of `draws` (see the class): each window copied once, from the store into the batch."""
        s, r = self.spec, self.reader
        n, (hw, ww), (h, w) = len(draws), self.window_shape, (draws[0].box.h, draws[0].box.w)
        out = {"image": _empty((n, len(s.offsets), hw, ww, 3), torch.uint8)}
        for pair in s.flows:
            out[f"flow/{pair}"] = _empty((n, hw, ww, 2), torch.int16)
            out[f"valid/{pair}"] = _empty((n, hw, ww), torch.bool)
        if s.labels:
            out["label"] = _empty((n, h, w), torch.uint8)
        for b, d in enumerate(draws):
            copies = [(out["image"].numpy()[b, f], r.frame(d.index, o, d.window)) for f, o in enumerate(s.offsets)]
            for pair in s.flows:
                copies += [(out[f"flow/{pair}"].numpy()[b], r.flow_fixed(d.index, pair, d.window)),
                           (out[f"valid/{pair}"].numpy()[b], r.flow_valid(d.index, pair, d.window))]
            for slot, window_data in copies:
                _place(slot, window_data)
            if s.labels:
                out["label"][b] = torch.from_numpy(d.label)
        out |= {"index": [d.index for d in draws], "id": [r.sample_ids[d.index] for d in draws],
                "box": [d.box for d in draws],
                "window": [d.window for d in draws]}
        if self._margin is not None:
            out["margin"] = [self._margin] * n
        return out
