"""The supervised training loop (source-only and target-oracle recipes), short and explicit.

One iteration: set the learning rate; take the batch of this iteration; forward
frame t; cross-entropy averaged over all pixels (ignored pixels count in the
denominator, as in mmseg); backward; optional gradient clipping; step.

Exact resumption: the batch of iteration i is a pure function of (seed, i)
(sample order: a permutation per pass over the data; crops: seeded by i), and a
checkpoint holds the model, the optimiser, the iteration and the RNG states. A
run killed at any point and started again continues with the same losses as an
uninterrupted one. Checkpoints are written to a temporary file and renamed.

Logs: `log.jsonl` in the run directory (one JSON object per logged iteration).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from vdatrain.data.samples import SampleSpec, StoreSamples
from vdatrain.models import build_model
from vdatrain.models.weights import load_backbone
from vdatrain.optim import build_optimizer, set_lr
from vdatrain.recipe import Recipe

CHECKPOINT = "checkpoint.pt"


def batch_indices(seed: int, it: int, batch: int, n: int) -> list[int]:
    """Items of iteration `it`: consecutive slices of a fresh permutation per pass over the data."""
    start = it * batch
    out = []
    while len(out) < batch:
        epoch, pos = divmod(start + len(out), n)
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        out.append(int(perm[pos]))
    return out


def collate(items: list[dict]) -> dict:
    return {k: torch.stack([it[k] for it in items]) for k in ("image", "label")}


def segmentation_loss(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of (B, C, h, w) logits upsampled to the (B, H, W) label, averaged over all pixels."""
    logits = F.interpolate(logits, size=label.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(logits.float(), label, ignore_index=255, reduction="none").mean()


def save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic: a kill leaves the previous checkpoint intact


def fit(recipe: Recipe, run_dir, progress: bool = True) -> list[dict]:
    """Train (or resume) the recipe's model on its source data; returns the logged records of this call."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "recipe.json").write_text(json.dumps(asdict(recipe), indent=2))
    t = recipe.train
    torch.manual_seed(t.seed)
    model = build_model(recipe.model.name, recipe.model.num_classes)
    if recipe.model.pretrained:
        load_backbone(model.backbone, recipe.model.pretrained)
    o = recipe.optim
    optimizer = build_optimizer(model, o.lr, o.weight_decay, o.head_lr_mult, o.betas)
    src = recipe.source
    data = StoreSamples(SampleSpec(store=src.store, crop=src.crop, scale=src.scale, offsets=(0,),
                                   max_class_ratio=src.max_class_ratio, seed=t.seed))
    start = 0
    ckpt_path = run_dir / CHECKPOINT
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        torch.set_rng_state(ckpt["rng"])
        start = ckpt["iteration"]
    model.train()
    records = []
    log = open(run_dir / "log.jsonl", "a")
    bar = tqdm(range(start, t.iters), initial=start, total=t.iters, desc="fit", unit="it", disable=not progress)
    tic = time.perf_counter()
    for it in bar:
        set_lr(optimizer, it, t.iters, o.warmup_iters, o.warmup_ratio)
        data.set_epoch(it)  # crops of this iteration are seeded by it
        batch = collate([data[k] for k in batch_indices(t.seed, it, t.batch_size, len(data))])
        with torch.autocast("cpu" if not torch.cuda.is_available() else "cuda", dtype=torch.bfloat16,
                            enabled=t.precision == "bf16"):
            logits = model(batch["image"][:, 0])
        loss = segmentation_loss(logits, batch["label"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if o.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip)
        optimizer.step()
        done = it + 1
        if done % t.log_every == 0 or done == t.iters:
            rec = {"iteration": done, "loss": loss.item(), "lr": optimizer.param_groups[0]["lr"],
                   "seconds_per_it": (time.perf_counter() - tic) / max(1, done - start)}
            records.append(rec)
            log.write(json.dumps(rec) + "\n")
            log.flush()
            bar.set_postfix(loss=f"{rec['loss']:.3f}")
        if done % t.checkpoint_every == 0 or done == t.iters:
            save_checkpoint(ckpt_path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                        "iteration": done, "rng": torch.get_rng_state()})
    log.close()
    return records
