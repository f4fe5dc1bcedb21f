"""One picture per replica: frame t | its label (Cityscapes colours) | exact flow t -> t-k (occluded black)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from flowprep.errors import FlowprepError
from flowprep.ingest.pattern import Pattern
from flowprep.labels import read_train_ids
from flowprep.manifest import load_manifest
from flowprep.figures import preview_figure, save


def sample_paths(root: Path, dataset: str, split: str, sample_id: str) -> tuple[Path, Path]:
    """(frame t, label of t) of a replica sample, from the manifest's layout patterns."""
    m = load_manifest(dataset)
    if dataset == "bdd":
        return root / m.layout["image"].format(split=split, id=sample_id), root / m.layout["label"].format(split=split, id=sample_id)
    fields = Pattern(m.sample_id).match(sample_id)
    if fields is None:
        raise FlowprepError(f"{sample_id!r} is not a {dataset} sample id (like {m.sample_id})")
    fields["split"] = split
    return root / m.layout["frame"].format(**fields), root / m.layout["label"].format(**fields)


def preview(root, out, zoom: float = 1.0) -> list[Path]:
    root, out = Path(root), Path(out)
    summary_file = root / "_truth" / "synth.json"
    if not summary_file.is_file():
        raise FlowprepError(f"{summary_file}: missing; is {root} the output of `flowprep synth`?")
    summary = json.loads(summary_file.read_text())
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for dataset, splits in summary["samples"].items():
        split = "train"
        # BDD's deliberately broken ids (no video, corrupt) have no flow truth: the middle sample of those that do
        with_truth = [s for s in splits[split] if (root / "_truth" / dataset / split / f"{s}.npz").is_file()]
        if not with_truth:
            raise FlowprepError(f"{root / '_truth' / dataset / split}: no flow truth for any {dataset} sample")
        sample_id = with_truth[len(with_truth) // 2]
        truth = np.load(root / "_truth" / dataset / split / f"{sample_id}.npz")
        key = "flow_0_-2" if dataset == "bdd" else "flow_0_-1"
        frame_path, label_path = sample_paths(root, dataset, split, sample_id)
        frame = cv2.imread(str(frame_path))[..., ::-1]
        label = read_train_ids(load_manifest(dataset), label_path)
        distance = key.split("_")[-1]
        fig = preview_figure(frame, label, truth[key], ~truth[key.replace("flow", "occ")],
                             f"exact flow t -> t{distance} (occluded black)", zoom)
        fig.suptitle(f"{dataset} {split} {sample_id}", fontsize=10)
        written.append(save(fig, out / f"{dataset}.png"))
    return written
