"""Plan the ingest of frame datasets (VIPER, Synthia-Seq, Cityscapes-Seq) from their manifests.

One sample per labelled frame t: label files are enumerated with the manifest's
label pattern (VIPER keeps every `labelled_every`-th frame), t is read from the
file name (so Cityscapes snippets labelled off frame 19 work), and the frames at
the requested offsets must exist, as must their labels where the dataset labels
every frame. Anything missing excludes the sample with a reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from flowprep.errors import FlowprepError, Unusable
from flowprep.ingest.pattern import Pattern
from flowprep.ingest.runner import Loaded, Plan
from flowprep.labels import read_train_ids
from flowprep.manifest import Manifest, load_classes, load_manifest
from flowprep.store import StoreSpec

FRAME_DATASETS = ("viper", "synthia-seq", "cityscapes-seq")


def read_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB pixels as stored: an EXIF orientation tag is ignored (a dataset is pixel arrays; its
    labels and videos are not rotated with it)."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if img is None:
        raise FlowprepError(f"{path}: not a readable image (corrupt, truncated or not an image)")
    return np.ascontiguousarray(img[..., ::-1])


def dataset_resolution(manifest: Manifest, root: Path, name: str | None = None) -> tuple[int, int]:
    """(H, W) of a dataset's store: the manifest's `native_resolution`, or the resolution a `flowprep synth`
    replica of another scale declares for it in `<root>/_truth/synth.json`. Never the first image's: one odd
    image must not change the size of every other."""
    import json

    truth = Path(root) / "_truth" / "synth.json"
    if truth.is_file():
        try:
            declared = json.loads(truth.read_text())["resolution"].get(name or manifest.name)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise FlowprepError(f"{truth}: not a replica's record (no resolution per dataset)") from None
        if declared is not None:
            return int(declared[0]), int(declared[1])
    return tuple(manifest.native_resolution)


def parse_split_file(path, manifest: Manifest) -> list[str]:
    """Sample ids from a split file in the reference's formats.

    Accepted lines: ``aachen/aachen_000000_000019`` (Cityscapes), ``001/001_00010``
    (VIPER), ``000123`` (Synthia), with or without a file suffix such as
    ``_leftImg8bit.png``; blank lines and ``#`` comments are skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise FlowprepError(f"{path}: split file not found")
    sid = Pattern(manifest.sample_id)
    ids = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#")[0].strip()
        if not line:
            continue
        name = line.rsplit("/", 1)[-1].split(".")[0]
        for suffix in ("_leftImg8bit", "_gtFine_labelIds", "_gtFine_labelTrainIds"):
            name = name.removesuffix(suffix)
        fields = sid.match(name)
        if fields is None:
            raise FlowprepError(f"{path}:{n}: {line!r} is not a {manifest.name} sample id (like {manifest.sample_id})")
        ids.append(sid.format(**fields))
    if not ids:
        raise FlowprepError(f"{path}: split file lists no samples")
    return ids


@dataclass
class FrameLoader:
    """Picklable: loads planned sample i (frames at the offsets, labels mapped to trainIds)."""

    dataset: str
    frames: list[list[str]]  # per sample, per frame offset
    labels: list[list[str]]  # per sample, per label offset
    shape: tuple[int, int]

    def __call__(self, i: int) -> Loaded:
        manifest = load_manifest(self.dataset)
        frames = [self._sized(p, read_rgb(Path(p))) for p in self.frames[i]]
        labels = [self._sized(p, read_train_ids(manifest, Path(p))) for p in self.labels[i]]
        return Loaded(np.stack(frames), np.stack(labels))

    def _sized(self, path: str, arr: np.ndarray) -> np.ndarray:
        """`arr` if it has the dataset's size; else this sample is skipped with the file named."""
        if arr.shape[:2] != self.shape:
            raise Unusable("size mismatch", f"{path}: size {arr.shape[1]}x{arr.shape[0]} differs from the dataset's "
                                            f"{self.shape[1]}x{self.shape[0]}")
        return arr


def plan_frames(dataset: str, root, split: str, offsets: list[int], split_file=None) -> Plan:
    if dataset not in FRAME_DATASETS:
        raise FlowprepError(f"unknown dataset {dataset!r} (choose from {', '.join(FRAME_DATASETS)})")
    root = Path(root)
    if not root.is_dir():
        raise FlowprepError(f"{root}: raw dataset folder not found")
    if 0 not in offsets:
        raise FlowprepError(f"offsets {offsets} must include 0 (the labelled frame t)")
    m = load_manifest(dataset)
    if "{split}" not in m.layout["label"] and split != "train" and not split_file:
        raise FlowprepError(f"{dataset} has no {split!r} split in its layout (one sequence, used for training); "
                            f"give --split-file to pick samples for another split")
    frame_pat, label_pat, sid_pat = Pattern(m.layout["frame"]), Pattern(m.layout["label"]), Pattern(m.sample_id)
    label_offsets = sorted(offsets) if m.labels_every_frame else [0]
    wanted = set(parse_split_file(split_file, m)) if split_file else None

    found: dict[str, dict] = {}
    for path in sorted(root.glob(label_pat.glob(split=split))):
        fields = label_pat.match(path.relative_to(root).as_posix())
        if fields is None or (m.labelled_every and fields["frame"] % m.labelled_every):
            continue
        found[sid_pat.format(**fields)] = fields
    if not found:
        raise FlowprepError(f"{root}: no {dataset} label files match {label_pat.glob(split=split)!r}; "
                            f"is --root the dataset's top folder and --split right?")

    ids, frames, labels, excluded = [], [], [], []
    if wanted is not None:
        excluded += [(s, "not found", "listed in the split file, no label file") for s in sorted(wanted - set(found))]
    for sid, fields in sorted(found.items()):
        if wanted is not None and sid not in wanted:
            continue
        t = fields["frame"]
        f_paths = [root / frame_pat.format(**{**fields, "frame": t + o}) for o in sorted(offsets)]
        l_paths = [root / label_pat.format(**{**fields, "frame": t + o}) for o in label_offsets]
        if t + min(offsets) < 0:
            excluded.append((sid, f"missing frame t{min(offsets):+d}", "before the first frame of the sequence"))
            continue
        missing = [(o, p) for o, p in zip(sorted(offsets), f_paths) if not p.is_file()]
        missing += [(o, p) for o, p in zip(label_offsets, l_paths) if not p.is_file()]
        if missing:
            o, p = missing[0]
            excluded.append((sid, f"missing frame t{o:+d}", str(p.relative_to(root))))
            continue
        ids.append(sid)
        frames.append([str(p) for p in f_paths])
        labels.append([str(p) for p in l_paths])

    sources = {"root": str(root.resolve()), "split_file": str(split_file) if split_file else None}
    if not ids:
        return Plan(None, None, excluded, sources)
    shape = dataset_resolution(load_manifest(dataset), root)
    spec = StoreSpec(dataset=dataset, split=split, classes=list(load_classes().names), height=shape[0],
                     width=shape[1], sample_ids=ids, frame_offsets=sorted(offsets), label_offsets=label_offsets)
    return Plan(spec, FrameLoader(dataset, frames, labels, shape), excluded, sources)
