"""The training loop, short and explicit; the recipe's method says what one iteration computes.

One iteration, top to bottom: seed this iteration's randomness; set the learning
rate; take this process's share of the iteration's batch (prepared by DataLoader
workers); the method's losses, one group per forward pass (forwards under optional
bf16 autocast), each group's sum back-propagated before the next forward so only
one graph is alive at a time (DDP averages gradients across processes); optional
gradient clipping; optimiser
step; the method's post-step update (e.g. the EMA teacher); log, checkpoint and
evaluate when due.

Exact resumption: the batch of iteration i is a pure function of (seed, i, process)
(`vdatrain.data.batches`), torch's generators are re-seeded from (seed, i, process)
at the start of every iteration, and a checkpoint holds the model, the optimiser,
the method's state and the iteration (which is also the scheduler's and the data
sampler's state). A run killed at any point and started again continues with the
losses of an uninterrupted one. Checkpoints are written to a temporary file and
renamed, by the main process only.

Run directory: `checkpoint.pt` (and `iter_N.pt` for the last `train.keep_checkpoints`), `log.jsonl` (one JSON object per logged
iteration), `tb/` (TensorBoard scalars), `recipe.json`, `run.json`, `eval/iter_N/`.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, fields
from functools import partial
from pathlib import Path

import numpy as np
import torch

from flowprep.progress import Progress
from vdatrain import distributed
from vdatrain.adapt.rcs import RareClassSampler
from vdatrain.data.batches import IterationBatches, loader, to_model
from vdatrain.data.samples import SampleSpec, StoreSamples
from vdatrain.methods import build_method
from vdatrain.models import build_model
from vdatrain.models.checkpoints import load_checkpoint_weights
from vdatrain.models.weights import load_backbone, safe_load
from vdatrain.optim import build_optimizer, set_lr
from vdatrain.recipe import DataSpec, OptimSpec, Recipe, RecipeError
from vdatrain.runlog import RunLog

CHECKPOINT = "checkpoint.pt"


def samples(data: DataSpec, seed: int, labels: bool = True, rcs=None, verify: bool = False) -> StoreSamples:
    rare = {"rare_min_pixels": rcs.min_pixels * rcs.min_crop_ratio, "rare_retries": rcs.retries} if rcs else {}
    return StoreSamples(SampleSpec(store=data.store, crop=data.crop, scale=data.scale, offsets=tuple(data.offsets),
                                   flows=tuple(data.flows), max_class_ratio=data.max_class_ratio,
                                   margins=data.margins, seed=seed, labels=labels, verify=verify, **rare))


def iteration_seed(seed: int, it: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, it, rank]).generate_state(1)[0])


class _RecordingFile(io.FileIO):
    """A file that keeps the OSError of a failed write: torch.save reports a full disk as a RuntimeError
    ("unexpected pos ..."), which names neither the file nor the cause."""

    error: OSError | None = None

    def write(self, data):
        try:
            return super().write(data)
        except OSError as e:
            self.error = e
            raise


def keep_history(run_dir: Path, iteration: int, keep: int) -> None:
    """iter_<iteration>.pt beside the rolling checkpoint (a hard link: no second copy on disk), the oldest
    removed beyond `keep`."""
    if keep <= 0:
        return
    kept = run_dir / f"iter_{iteration}.pt"
    kept.unlink(missing_ok=True)
    try:
        os.link(run_dir / CHECKPOINT, kept)
    except OSError:  # a file system without hard links
        shutil.copyfile(run_dir / CHECKPOINT, kept)
    history = sorted((p for p in run_dir.glob("iter_*.pt") if p.stem[5:].isdigit()), key=lambda p: int(p.stem[5:]))
    for old in history[:-keep]:
        old.unlink()


def save_checkpoint(path: Path, state: dict) -> None:
    """Write `state` to `path` atomically: a kill or a full disk leaves the previous checkpoint intact and no
    temporary file behind; a failed write is an OSError naming the file (the CLI's exit 1)."""
    tmp = path.with_suffix(".tmp")
    f = None
    try:
        with _RecordingFile(tmp, "wb") as f:
            torch.save(state, f)
    except (OSError, RuntimeError) as e:
        tmp.unlink(missing_ok=True)
        cause = (f.error if f is not None else None) or (e if isinstance(e, OSError) else None)
        if cause is None:
            raise
        raise OSError(cause.errno, f"{path}: the checkpoint could not be written ({cause.strerror})") from None
    os.replace(tmp, path)


SCHEDULE = ["train.iters", *(f"optim.{f.name}" for f in fields(OptimSpec))]  # what a resume may change if allowed


def _value(recipe: dict, key: str):
    section, name = key.split(".")
    return recipe[section][name]


def load_checkpoint(path: Path, recipe: Recipe, model, optimizer, method, allow_schedule_change: bool = False) -> int:
    """Restore a run; returns the iteration it stopped at. The data must be the same for an exact resume; the
    schedule (train.iters, optim.*) too, unless `allow_schedule_change`: then the run continues on the new
    recipe's learning rates, weight decays and betas from the iteration it stopped at."""
    try:
        ckpt = safe_load(path)  # weights_only: a checkpoint swapped into the run folder cannot run code
        was, now = ckpt["recipe"], asdict(recipe)
        model_state, optim_state, method_state, iteration = (ckpt[k] for k in ("model", "optimizer", "method",
                                                                                "iteration"))
    except (KeyError, TypeError) as e:
        raise RecipeError(f"{path}: not a checkpoint of `vdatrain fit` (no {e}); use another --run-dir") from None
    for key in ("train.seed", "train.batch_size"):
        if _value(was, key) != _value(now, key):
            raise RecipeError(f"{key}: {_value(now, key)!r} differs from {_value(was, key)!r} of the run being "
                              f"resumed in {path.parent}; use another --run-dir")
    changed = [key for key in SCHEDULE if _value(was, key) != _value(now, key)]
    if changed and not allow_schedule_change:
        key = changed[0]
        raise RecipeError(f"{key}: {_value(now, key)!r} differs from {_value(was, key)!r} of the run being resumed "
                          f"in {path.parent}; resume with the run's value, use another --run-dir, or pass "
                          f"--allow-schedule-change to continue on the new schedule")
    model.load_state_dict(model_state)
    fresh = [{k: g[k] for k in ("base_lr", "lr", "weight_decay", "betas")} for g in optimizer.param_groups]
    optimizer.load_state_dict(optim_state)
    if changed:  # the checkpoint's groups carry the old rates: take the new recipe's
        for group, new in zip(optimizer.param_groups, fresh):
            group.update(new)
    method.load_state_dict(method_state)
    return iteration


def fit(recipe: Recipe, run_dir, progress: bool = True, run_info: dict | None = None,
        allow_schedule_change: bool = False) -> list[dict]:
    """Train (or resume) the recipe's model; returns the records logged by this call (main process)."""
    d = distributed.setup(recipe.train.dist_timeout_min)
    try:
        return _fit(recipe, Path(run_dir), d, progress, run_info or {}, allow_schedule_change)
    finally:
        distributed.teardown()


def _fit(recipe: Recipe, run_dir: Path, d: distributed.Dist, progress: bool, run_info: dict,
         allow_schedule_change: bool) -> list[dict]:
    t, o = recipe.train, recipe.optim
    torch.manual_seed(t.seed)  # the same initial weights in every process
    model = build_model(recipe.model.name, recipe.model.num_classes, recipe.model.hrda, recipe.model.accel,
                        recipe.model.checkpointing)
    if recipe.model.pretrained:
        load_backbone(model.backbone, recipe.model.pretrained)
    if recipe.model.init:  # e.g. a source-only run; between HRDA and single-scale models the attention head
        # starts fresh or is left out
        single = model.model if recipe.model.accel else model  # and ACCEL its identity fusion
        load_checkpoint_weights(single, recipe.model.init, may_lack=("attention.",), may_drop=("attention.",))
    model.to(d.device)
    net = distributed.wrap(model, d)
    model = distributed.unwrap(net)  # SyncBatchNorm conversion makes a new module tree
    method = build_method(recipe, model)
    at_base_lr = (model.fusion,) if recipe.model.accel and recipe.model.accel.fusion_lr == "backbone" else ()
    optimizer = build_optimizer(model, o.lr, o.weight_decay, o.head_lr_mult, o.betas, o.norm_weight_decay, at_base_lr)
    start = 0
    if (run_dir / CHECKPOINT).exists():
        start = load_checkpoint(run_dir / CHECKPOINT, recipe, model, optimizer, method, allow_schedule_change)
    if d.main:  # after the resume checks: recipe.json always describes what this run trains on
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "recipe.json").write_text(json.dumps(asdict(recipe), indent=2))
        (run_dir / "run.json").write_text(json.dumps({**run_info, "processes": d.world}, indent=2))
    rcs = recipe.adapt.rcs if recipe.adapt else None
    source = samples(recipe.source, t.seed, rcs=rcs, verify=t.verify_reads)
    refine = recipe.adapt.refine if recipe.adapt else None
    oracle = refine is not None and refine.strategy.startswith("oracle")  # the only use of target labels in training
    target = samples(recipe.target, t.seed, labels=oracle, verify=t.verify_reads) if recipe.target else None
    chooser = RareClassSampler(source.class_counts(), rcs.temperature, rcs.min_pixels, t.seed) if rcs else None
    batches = IterationBatches(source, t.batch_size, t.seed, d, target=target, choose_source=chooser)
    log = RunLog(run_dir, enabled=d.main)
    skipped = {name: s.skipped for name, s in (("source", source), ("target", target)) if s is not None and s.skipped}
    if skipped:
        log.write({"iteration": start, "skipped": skipped})
    if skipped and d.main:
        for name, ids in skipped.items():
            sid, why = next(iter(ids.items()))
            print(f"warning: {len(ids)} {name} samples left out of training ({sid}: {why}"
                  f"{', ...' if len(ids) > 1 else ''}); listed in {run_dir / 'log.jsonl'}", file=sys.stderr)
    if chooser is not None and start == 0:
        log.write({"iteration": 0, "rcs_classes": chooser.classes.tolist(), "rcs_p": chooser.p.round(4).tolist(),
                   "rcs_classes_without_samples": chooser.dropped})
    records = []
    net.train()
    bar = Progress(t.iters, "fit", "it", initial=start, enabled=progress and d.main)
    amp = partial(torch.autocast, d.device.type, dtype=torch.bfloat16, enabled=t.precision == "bf16")
    tic = time.perf_counter()
    for it, batch in enumerate(loader(batches, start, t.iters, t.workers), start):
        torch.manual_seed(iteration_seed(t.seed, it, d.rank))  # dropout, drop-path, augmentations
        set_lr(optimizer, it, t.iters, o.warmup_iters, o.warmup_ratio)
        batch = to_model(batch, d.device)  # on the device; images normalised there
        optimizer.zero_grad(set_to_none=True)
        losses = {}
        for terms in method.losses(net, batch, it, amp):  # one group per forward pass
            sum(terms.values()).backward()  # frees that pass's graph before the next forward
            losses |= {k: v.detach() for k, v in terms.items()}
        loss = sum(losses.values())
        if o.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip)
        optimizer.step()
        method.after_step(model, it)
        done = it + 1
        fields = {}  # progress: the latest logged loss and learning rate
        if done % t.log_every == 0 or done == t.iters:
            values = np.mean(d.gather([loss.item(), *(v.item() for v in losses.values())]), axis=0)
            rec = {"iteration": done, "loss": float(values[0]),
                   **{f"loss/{k}": float(v) for k, v in zip(losses, values[1:])},
                   **{k: float(v) for k, v in method.stats.items()}, "lr": optimizer.param_groups[0]["lr"],
                   "seconds_per_it": (time.perf_counter() - tic) / (done - start),
                   "samples": {name: d.gather(b["id"]) for name, b in batch.items()}}
            if d.main and not records:  # what reaches the model, once per call: this process's tensors
                rec["shapes"] = {name: {k: list(v.shape) for k, v in b.items() if isinstance(v, torch.Tensor)}
                                 for name, b in batch.items()}
            if d.main:
                records.append(rec)
                log.write(rec)
                fields = {"loss": rec["loss"], "lr": rec["lr"]}
        bar.update(1, **fields)
        if done % t.checkpoint_every == 0 or done == t.iters:
            in_sync = distributed.replicas_in_sync(net, d)
            if d.main:
                save_checkpoint(run_dir / CHECKPOINT, {
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(), "method": method.state_dict(),
                    "iteration": done, "recipe": asdict(recipe), "processes": d.world})
                keep_history(run_dir, done, t.keep_checkpoints)
                log.write({"iteration": done, "checkpoint": CHECKPOINT, "replicas_in_sync": in_sync})
        if t.eval_every and done % t.eval_every == 0:  # every process evaluates its share of the images
            log.write({"iteration": done, **evaluate_run(recipe, model, run_dir / "eval" / f"iter_{done}", d)})
            net.train()
    bar.close()
    log.close()
    return records


def evaluate_run(recipe: Recipe, model: torch.nn.Module, out_dir: Path, d: distributed.Dist) -> dict:
    """mIoU of the current model on the recipe's eval store, as log fields ("miou/<protocol>"); every process
    predicts its share of the images, the main one writes the files."""
    from vdatrain.evaluate import evaluate, report

    e = recipe.eval
    conf = evaluate(model, e.store, e.window, e.stride, recipe.model.num_classes, d.device, dist=d)
    return {f"miou/{p}": v for p, v in report(conf, e.classes, out_dir if d.main else None)["miou"].items()}
