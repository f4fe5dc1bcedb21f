"""The training loop, short and explicit: build the run, then for every iteration one training step and the
named steps that are due (log, checkpoint, evaluate).

Each iteration puts this process's share of its batch (prepared by DataLoader workers) on the device, then
`train_step`, top to bottom: seed this iteration's randomness; set the learning rate; the method's losses, one
group per forward pass (forwards under optional bf16 autocast), each group's sum back-propagated before
the next forward so only one graph is alive at a time (DDP averages the gradients across processes once,
after the last group);
optional gradient clipping; optimiser step; the step of every optimiser the method's parts declare (the
video discriminator's); the method's post-step update (the EMA teacher). The loop names no part: what a
part needs from it (optimisers, target labels, a source sampler, state to checkpoint) the method declares
(`vdatrain.methods`); what the run is made of, `vdatrain.run.build_run` builds.

A loss that is not finite stops the run (`LossWatch`): it is tracked on the device every step and read
where the loop reads values anyway (logging, checkpointing), so no step waits for the GPU; the error names
the first iteration and loss term that went bad, and no checkpoint is written after it, so the run folder
keeps the last good one.

Exact resumption: the batch of iteration i is a pure function of (seed, i, process)
(`vdatrain.data.batches`), torch's generators are re-seeded from (seed, i, process) at the start of
every iteration, and a checkpoint holds the model, the optimiser, the method's state and the iteration
(which is also the scheduler's and the data sampler's state). A run killed at any point and started again
continues with the losses of an uninterrupted one, and its logs keep one record per iteration.

Run directory: `checkpoint.pt` (layout: `vdatrain.checkpoint`; and `iter_N.pt` for the last
`train.keep_checkpoints`), `log.jsonl` (one JSON object per logged iteration), `tb/` (TensorBoard
scalars), `recipe.json`, `run.json`, `eval/iter_N/`.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import numpy as np
import torch

from flowprep.exits import ProblemFound
from flowprep.progress import Progress
from vdatrain import distributed
from vdatrain.checkpoint import CHECKPOINT, keep_history, run_state, save_checkpoint
from vdatrain.lock import FolderLock
from vdatrain.data.batches import loader, to_model
from vdatrain.optim import set_lr
from vdatrain.recipe import Recipe
from vdatrain.run import Run, build_run, iteration_seed


class LossWatch:
    """Remembers, on the device, the first loss term that was not finite since the last `check`; `check` reads
    it (one small copy) and raises `ProblemFound` naming the iteration and the term."""

    def __init__(self, device: torch.device):
        self.first = torch.full((), -1, dtype=torch.int64, device=device)
        self.seen: list[tuple[int, str]] = []  # (iteration, term) of every value `first` can point at

    def update(self, it: int, losses: dict[str, torch.Tensor]) -> None:
        bad = ~torch.isfinite(torch.stack([v.float() for v in losses.values()]))
        at = len(self.seen) + bad.int().argmax()
        self.first = torch.where((self.first < 0) & bad.any(), at, self.first)
        self.seen += [(it, name) for name in losses]

    def check(self) -> None:
        first = int(self.first)
        if first >= 0:
            it, name = self.seen[first]
            raise ProblemFound(f"iteration {it + 1}: the {name} loss is not finite (NaN or inf); training stopped, "
                               f"the run folder keeps the last checkpoint before it")
        self.seen.clear()


def fit(recipe: Recipe, run_dir, progress: bool = True, run_info: dict | None = None,
        allow_schedule_change: bool = False) -> list[dict]:
    """Train (or resume) the recipe's model; returns the records logged by this call (main process)."""
    d = distributed.setup(recipe.train.dist_timeout_min)
    try:
        # one `vdatrain fit` per run folder: a second one would interleave checkpoints and logs
        with FolderLock(run_dir, "run folder") if d.main else nullcontext():
            run = build_run(recipe, Path(run_dir), d, run_info, allow_schedule_change)
            try:
                return train(run, progress)
            finally:
                run.log.close()
    finally:
        distributed.teardown()


def train(run: Run, progress: bool = True) -> list[dict]:
    """Iterations run.start .. train.iters: a step each, then whatever is due."""
    t, d = run.recipe.train, run.dist
    amp = partial(torch.autocast, d.device.type, dtype=torch.bfloat16, enabled=t.precision == "bf16")
    watch, records = LossWatch(d.device), []
    bar = Progress(t.iters, "fit", "it", initial=run.start, enabled=progress and d.main)
    tic = time.perf_counter()
    run.net.train()
    for it, batch in enumerate(loader(run.batches, run.start, t.iters, t.workers), run.start):
        batch = to_model(batch, d.device)  # on the device: cropped, flipped and normalised there
        losses, own = train_step(run, batch, it, amp)
        watch.update(it, losses | {f"{name} (own optimiser)": v for name, v in own.items()})
        done, fields = it + 1, {}
        if done % t.log_every == 0 or done == t.iters:
            watch.check()
            rec = log_step(run, done, losses, own, batch, (time.perf_counter() - tic) / (done - run.start),
                           shapes=not records)
            if rec is not None:
                records.append(rec)
                fields = {"loss": rec["loss"], "lr": rec["lr"]}
        bar.update(1, **fields)
        if done % t.checkpoint_every == 0 or done == t.iters:
            watch.check()
            checkpoint_step(run, done)
        if t.eval_every and done % t.eval_every == 0:
            evaluate_step(run, done)
    bar.close()
    return records


def train_step(run: Run, batch: dict, it: int, amp) -> tuple[dict, dict]:
    """One optimisation step of iteration `it` on its batch (on the device, `to_model`); returns the detached loss terms of the model and the losses of
    the parts' own optimisers (on the device, not read)."""
    t, o, d = run.recipe.train, run.recipe.optim, run.dist
    torch.manual_seed(iteration_seed(t.seed, it, d.rank))  # dropout, drop-path, augmentations
    set_lr(run.optimizer, it, t.iters, o.warmup_iters, o.warmup_ratio)
    run.optimizer.zero_grad(set_to_none=True)
    losses, own = {}, {}
    groups = run.method.group_count(it)
    for n, terms in enumerate(run.method.losses(run.net, batch, it, amp), 1):  # one group per forward pass
        # frees that pass's graph before the next forward; DDP all-reduces the summed gradients once, after the
        # last group (the earlier backwards accumulate locally under no_sync)
        with run.net.no_sync() if n < groups and d.world > 1 else nullcontext():
            sum(terms.values()).backward()
        losses |= {k: v.detach() for k, v in terms.items()}
    if n != groups:
        raise RuntimeError(f"{type(run.method).__name__} yielded {n} loss groups at iteration {it}, "
                           f"its group_count said {groups}")
    if o.grad_clip:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), o.grad_clip)
    run.optimizer.step()
    for part in run.method.optimizers:  # e.g. the video discriminator, on the predictions it was shown
        if (part_loss := part.step(it, d)) is not None:
            own[part.name] = part_loss
    run.method.after_step(run.model, it)
    return losses, own


def log_step(run: Run, done: int, losses: dict, own: dict, batch: dict, seconds_per_it: float,
             shapes: bool = False) -> dict | None:
    """The record of iteration `done` (losses averaged over the processes), written by the main process, which
    gets it back; the others get None. `own`: the losses of the parts' own optimisers (`loss_<name>`);
    `shapes`: add what reaches the model (this process's tensors)."""
    d = run.dist
    values = np.mean(d.gather([float(sum(losses.values())), *(float(v) for v in losses.values())]), axis=0)
    samples = {name: d.gather(b["id"]) for name, b in batch.items()}  # every process takes part in a gather
    if not d.main:
        return None
    rec = {"iteration": done, "loss": float(values[0]),
           **{f"loss/{k}": float(v) for k, v in zip(losses, values[1:])},
           **{k: float(v) for k, v in run.method.stats.items()},
           **{f"loss_{k}": float(v) for k, v in own.items()},
           "lr": run.optimizer.param_groups[0]["lr"], "seconds_per_it": seconds_per_it, "samples": samples}
    if shapes:
        rec["shapes"] = {name: {k: list(v.shape) for k, v in b.items() if isinstance(v, torch.Tensor)}
                         for name, b in batch.items()}
    run.log.write(rec)
    return rec


def checkpoint_step(run: Run, done: int) -> None:
    """Save the run after `done` iterations (main process; every process checks the replicas agree)."""
    t, d = run.recipe.train, run.dist
    in_sync = distributed.replicas_in_sync(run.net, d)
    if d.main:
        save_checkpoint(run.run_dir / CHECKPOINT, run_state(run.model, run.optimizer, run.method, done, run.recipe,
                                                            d.world))
        keep_history(run.run_dir, done, t.keep_checkpoints)
        run.log.write({"iteration": done, "checkpoint": CHECKPOINT, "replicas_in_sync": in_sync})


def evaluate_step(run: Run, done: int) -> None:
    """mIoU of the current model on the recipe's eval store, logged as "miou/<protocol>": every process predicts
    its share of the images, the main one writes the files under eval/iter_<done>."""
    from vdatrain.evaluation import evaluate

    result = evaluate(run.recipe, run.model, run.dist, run.run_dir / "eval" / f"iter_{done}")
    run.log.write({"iteration": done, **{f"miou/{p}": v for p, v in result["miou"].items()}})
    run.net.train()
