"""The training loop, short and explicit; the recipe's method says what one iteration computes.

One iteration, top to bottom: seed this iteration's randomness; set the learning
rate; take this process's share of the iteration's batch (prepared by DataLoader
workers); the method's losses, one group per forward pass (forwards under optional
bf16 autocast), each group's sum back-propagated before the next forward so only
one graph is alive at a time (DDP averages gradients across processes); optional
gradient clipping; optimiser step; the step of every optimiser the method's parts
declare (the video discriminator's), each on its own loss and schedule; the
method's post-step update (e.g. the EMA teacher); log, checkpoint and evaluate when
due. The loop names no part: what a part needs from it (optimisers, target labels, a
source sampler, state to checkpoint) the method declares (`vdatrain.methods`).

Exact resumption: the batch of iteration i is a pure function of (seed, i, process)
(`vdatrain.data.batches`), torch's generators are re-seeded from (seed, i, process)
at the start of every iteration, and a checkpoint holds the model, the optimiser,
the method's state and the iteration (which is also the scheduler's and the data
sampler's state). A run killed at any point and started again continues with the
losses of an uninterrupted one. Checkpoints are written to a temporary file and
renamed, by the main process only.

Run directory: `checkpoint.pt` (layout: `vdatrain.checkpoint`; and `iter_N.pt` for the last
`train.keep_checkpoints`), `log.jsonl` (one JSON object per logged iteration), `tb/` (TensorBoard
scalars), `recipe.json`, `run.json`, `eval/iter_N/`.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path

import numpy as np
import torch

from flowprep.progress import Progress
from vdatrain import distributed
from vdatrain.data.batches import IterationBatches, loader, to_model
from vdatrain.data.samples import SampleSpec, StoreSamples
from vdatrain.methods import build_method
from vdatrain.models import build_model
from vdatrain.checkpoint import CHECKPOINT, init_weights, keep_history, load_checkpoint, run_state, save_checkpoint
from vdatrain.models.weights import load_backbone
from vdatrain.optim import build_optimizer, set_lr
from vdatrain.recipe import DataSpec, Recipe
from vdatrain.runlog import RunLog

def samples(data: DataSpec, seed: int, verify: bool = False, **options) -> StoreSamples:
    """The training samples of a recipe's data section; `options` (labels, the rare class crop rule) are what
    the method asks of that part (`method.sample_options`)."""
    return StoreSamples(SampleSpec(store=data.store, crop=data.crop, scale=data.scale, offsets=tuple(data.offsets),
                                   flows=tuple(data.flows), max_class_ratio=data.max_class_ratio,
                                   margins=data.margins, seed=seed, verify=verify, **options))


def iteration_seed(seed: int, it: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, it, rank]).generate_state(1)[0])


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
    if recipe.model.init:  # e.g. a source-only run
        init_weights(model, recipe.model.init)
    model.to(d.device)
    net = distributed.wrap(model, d)
    model = distributed.unwrap(net)  # SyncBatchNorm conversion makes a new module tree
    method = build_method(recipe, model)
    optimizer = build_optimizer(model, o.lr, o.weight_decay, o.head_lr_mult, o.betas, o.norm_weight_decay)
    start = 0
    if (run_dir / CHECKPOINT).exists():
        start = load_checkpoint(run_dir / CHECKPOINT, recipe, model, optimizer, method, allow_schedule_change)
    if d.main:  # after the resume checks: recipe.json always describes what this run trains on
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "recipe.json").write_text(json.dumps(asdict(recipe), indent=2))
        (run_dir / "run.json").write_text(json.dumps({**run_info, "processes": d.world}, indent=2))
    source = samples(recipe.source, t.seed, t.verify_reads, **method.sample_options("source"))
    target = samples(recipe.target, t.seed, t.verify_reads, **method.sample_options("target")) if recipe.target \
        else None
    chooser = method.source_chooser(source, t.seed)
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
        log.write({"iteration": 0, **chooser.log_record()})
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
        part_losses = {}
        for part in method.optimizers:  # e.g. the video discriminator, on the predictions it was shown
            if (part_loss := part.step(it, d)) is not None:
                part_losses[f"loss_{part.name}"] = part_loss
        method.after_step(model, it)
        done = it + 1
        fields = {}  # progress: the latest logged loss and learning rate
        if done % t.log_every == 0 or done == t.iters:
            values = np.mean(d.gather([loss.item(), *(v.item() for v in losses.values())]), axis=0)
            rec = {"iteration": done, "loss": float(values[0]),
                   **{f"loss/{k}": float(v) for k, v in zip(losses, values[1:])},
                   **{k: float(v) for k, v in (method.stats | part_losses).items()},
                   "lr": optimizer.param_groups[0]["lr"],
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
                save_checkpoint(run_dir / CHECKPOINT, run_state(model, optimizer, method, done, recipe, d.world))
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
    from vdatrain.evaluation import run_evaluation

    return {f"miou/{p}": v for p, v in run_evaluation(recipe, model, out_dir, d)["miou"].items()}
