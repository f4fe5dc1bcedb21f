"""Is the synthetic domain gap real? Source-only vs target-trained on the demo replicas.

    python bench/domain_gap.py [--raw ~/vdatrain-data/demo/raw] [--iters 400] [--seeds 0,1,2]

Trains the same small fully-convolutional net (plain cross-entropy, random
crops and flips, no adaptation) on each training set and scores mIoU on the
targets' val sets over the shift's evaluated classes (standard protocol). This
reads the raw replica files directly (no store, no vdatrain: the check belongs
to the data generator), so it measures the data, not the trainer. A clear
source-only < target-trained gap is what adaptation has to close.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from flowprep.labels import read_train_ids
from flowprep.manifest import load_classes, load_manifest
from flowprep.synth.generate import generate
from flowprep.synth.preview import sample_paths
from vdatrain.recipe.load import data_home

SIZE = (128, 224)  # every image is resized to this (H, W) so domains share one geometry


def load(root: Path, dataset: str, split: str):
    summary = json.loads((root / "_truth/synth.json").read_text())
    images, labels = [], []
    manifest = load_manifest(dataset)
    for sid in summary["samples"][dataset][split]:
        frame, label = sample_paths(root, dataset, split, sid)
        img = cv2.resize(cv2.imread(str(frame))[..., ::-1], SIZE[::-1], interpolation=cv2.INTER_AREA)
        lab = cv2.resize(read_train_ids(manifest, label), SIZE[::-1], interpolation=cv2.INTER_NEAREST)
        images.append(img)
        labels.append(lab)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    return (x - 0.45) / 0.25, torch.from_numpy(np.stack(labels)).long()


class SmallFCN(nn.Module):
    """(B, 3, H, W) -> (B, 19, H, W) logits; output stride 4, then bilinear upsampling."""

    def __init__(self, classes: int = 19, width: int = 32):
        super().__init__()

        def block(i, o, s):
            return nn.Sequential(nn.Conv2d(i, o, 3, s, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True))

        self.body = nn.Sequential(block(3, width, 2), block(width, width, 1), block(width, 2 * width, 2),
                                  block(2 * width, 2 * width, 1), nn.Conv2d(2 * width, 2 * width, 3, 1, 2, 2),
                                  nn.ReLU(inplace=True))
        self.head = nn.Conv2d(2 * width, classes, 1)

    def forward(self, x):
        return F.interpolate(self.head(self.body(x)), size=x.shape[-2:], mode="bilinear", align_corners=False)


def train(x, y, iters: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = SmallFCN()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    for it in range(iters):
        idx = rng.integers(0, len(x), 8)
        top, left = rng.integers(0, SIZE[0] - 96 + 1), rng.integers(0, SIZE[1] - 96 + 1)
        xb, yb = x[idx, :, top:top + 96, left:left + 96], y[idx, top:top + 96, left:left + 96]
        if rng.random() < 0.5:
            xb, yb = xb.flip(-1), yb.flip(-1)
        loss = F.cross_entropy(model(xb), yb, ignore_index=255)
        opt.zero_grad()
        loss.backward()
        opt.step()
        for g in opt.param_groups:
            g["lr"] = 2e-3 * (1 - (it + 1) / iters)
    return model.eval()


@torch.no_grad()
def miou(model, x, y, classes) -> float:
    pred = model(x).argmax(1)
    ious = []
    for c in classes:
        keep = torch.isin(y, torch.tensor(classes))  # standard protocol: only labels of evaluated classes
        inter = ((pred == c) & (y == c) & keep).sum().item()
        union = (((pred == c) & keep) | (y == c)).sum().item()
        if (y == c).any():
            ious.append(inter / union)
    return 100 * float(np.mean(ious))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--raw", type=Path, default=data_home() / "demo" / "raw",
                    help="output of `flowprep synth --scale demo` (default: where `make demo` writes it)")
    ap.add_argument("--iters", type=int, default=400)
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args()
    torch.set_num_threads(2)
    if not (args.raw / "_truth/synth.json").exists():
        generate(args.raw, scale="demo", seed=0, workers=2)
    sets = {name: load(args.raw, *name.split(":")) for name in
            ("viper:train", "synthia-seq:train", "cityscapes-seq:train", "cityscapes-seq:val", "bdd:train", "bdd:val")}
    evaluated = load_classes().evaluated
    rows = [
        ("VIPER -> CS-Seq", "viper:train", "cityscapes-seq:val", "viper"),
        ("CS-Seq -> CS-Seq (target)", "cityscapes-seq:train", "cityscapes-seq:val", "viper"),
        ("Synthia -> CS-Seq", "synthia-seq:train", "cityscapes-seq:val", "synthia-seq"),
        ("CS-Seq -> CS-Seq (target)", "cityscapes-seq:train", "cityscapes-seq:val", "synthia-seq"),
        ("VIPER -> BDD", "viper:train", "bdd:val", "viper"),
        ("BDD -> BDD (target)", "bdd:train", "bdd:val", "viper"),
    ]
    seeds = [int(s) for s in args.seeds.split(",")]
    models: dict = {}
    start = time.time()
    print(f"| train -> test | classes | mIoU over seeds {seeds} | mean |")
    print("|---|---|---|---:|")
    for label, train_set, test_set, class_set in rows:
        scores = []
        for seed in seeds:
            key = (train_set, seed)
            if key not in models:
                models[key] = train(*sets[train_set], args.iters, seed)
            scores.append(miou(models[key], *sets[test_set], list(evaluated[class_set])))
        print(f"| {label} | {class_set} ({len(evaluated[class_set])}) | {', '.join(f'{s:.1f}' for s in scores)} | {np.mean(scores):.1f} |")
    print(f"\n{len(models)} models trained in {time.time() - start:.0f} s; sizes: "
          + ", ".join(f"{k} {len(v[0])}" for k, v in sets.items()))


if __name__ == "__main__":
    main()
