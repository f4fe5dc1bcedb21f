"""Building a training run: everything `vdatrain fit` needs before its first step, in the order it is made.

    build_run(recipe, run_dir, d) -> Run

1. the device's settings (TF32, cuDNN's algorithm search), the model (`vdatrain.models.build_model`), its
   ImageNet backbone weights (`model.pretrained`) and its whole-model start (`model.init`), moved to the
   device (in channels-last layout if asked) and wrapped for several processes;
2. the method (what one iteration computes, `vdatrain.methods`) and the model's optimiser;
3. the resume: the run folder's checkpoint restores model, optimiser, method and the iteration;
4. the samples of the source and target stores, cropped as the method asks, and the iteration batches;
5. the run log (JSON lines and TensorBoard), which on a resume forgets what came after the checkpoint.

Nothing here trains; `vdatrain.train` runs the steps.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from vdatrain import distributed
from vdatrain.checkpoint import CHECKPOINT, init_weights, load_checkpoint
from vdatrain.data.batches import IterationBatches
from vdatrain.data.samples import SampleSpec, StoreSamples
from vdatrain.methods import build_method
from vdatrain.models import build_model
from vdatrain.models.weights import load_backbone
from vdatrain.optim import build_optimizer
from vdatrain.recipe import DataSpec, Recipe
from vdatrain.runlog import RunLog


@dataclass
class Run:
    """A run ready to train: `net` is what the step calls (DDP-wrapped on several processes), `model` the plain
    module (checkpoints, EMA, evaluation); `start` the iteration to continue from (0 for a new run)."""
    recipe: Recipe
    run_dir: Path
    dist: distributed.Dist
    model: torch.nn.Module
    net: torch.nn.Module
    method: object
    optimizer: torch.optim.Optimizer
    batches: IterationBatches
    log: RunLog
    start: int


def samples(data: DataSpec, seed: int, verify: bool = False, **options) -> StoreSamples:
    """The training samples of a recipe's data section; `options` (labels, the rare class crop rule) are what
    the method asks of that part (`method.sample_options`)."""
    return StoreSamples(SampleSpec(store=data.store, crop=data.crop, scale=data.scale, offsets=tuple(data.offsets),
                                   flows=tuple(data.flows), max_class_ratio=data.max_class_ratio,
                                   margins=data.margins, label_resize=data.label_resize, seed=seed, verify=verify,
                                   **options))


def build_model_with_weights(recipe: Recipe) -> torch.nn.Module:
    """The recipe's model with its pretrained backbone and its `model.init` weights, on the CPU."""
    torch.manual_seed(recipe.train.seed)  # the same initial weights in every process
    m = recipe.model
    model = build_model(m.name, m.num_classes, m.hrda, m.accel, m.checkpointing, m.backbone)
    if m.pretrained:
        load_backbone(model.backbone, m.pretrained)
    if m.init:  # e.g. a source-only run
        init_weights(model, m.init)
    return model


def build_run(recipe: Recipe, run_dir: Path, d: distributed.Dist, run_info: dict | None = None,
              allow_schedule_change: bool = False) -> Run:
    """Steps 1-5 of the module docstring."""
    t, o = recipe.train, recipe.optim
    d.check_batch(t.batch_size)  # before anything is built
    distributed.configure_device(t)
    model = build_model_with_weights(recipe).to(d.device)
    if t.channels_last:
        model = model.to(memory_format=torch.channels_last)
    net = distributed.wrap(model, d)
    model = distributed.unwrap(net)  # SyncBatchNorm conversion makes a new module tree
    method = build_method(recipe, model, d)
    optimizer = build_optimizer(model, o.lr, o.weight_decay, o.head_lr_mult, o.betas, o.norm_weight_decay,
                                o.layer_decay)
    start = 0
    if (run_dir / CHECKPOINT).exists():
        start = load_checkpoint(run_dir / CHECKPOINT, recipe, model, optimizer, method, allow_schedule_change)
    if d.main:  # after the resume checks: recipe.json always describes what this run trains on
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "recipe.json").write_text(json.dumps(asdict(recipe), indent=2))
        (run_dir / "run.json").write_text(json.dumps({**(run_info or {}), "processes": d.world}, indent=2))
    source = samples(recipe.source, t.seed, t.verify_reads, **method.sample_options("source"))
    target = samples(recipe.target, t.seed, t.verify_reads, **method.sample_options("target")) \
        if recipe.target else None
    chooser = method.source_chooser(source, t.seed)
    batches = IterationBatches(source, t.batch_size, t.seed, d.rank, d.world, target=target, choose_source=chooser)
    log = RunLog(run_dir, start, enabled=d.main)
    if start and d.main:
        print(f"{run_dir}: resuming from iteration {start} of {t.iters} ({run_dir / CHECKPOINT})", file=sys.stderr)
    _log_left_out(log, start, {"source": source, "target": target}, d, run_dir)
    if chooser is not None and start == 0:
        log.write({"iteration": 0, **chooser.log_record()})
    return Run(recipe, run_dir, d, model, net, method, optimizer, batches, log, start)


def _log_left_out(log: RunLog, start: int, streams: dict, d: distributed.Dist, run_dir: Path) -> None:
    """Samples a store holds incompletely are left out of training: logged and said, never dropped silently."""
    skipped = {name: s.skipped for name, s in streams.items() if s is not None and s.skipped}
    if not skipped:
        return
    log.write({"iteration": start, "skipped": skipped})
    if d.main:
        for name, ids in skipped.items():
            sid, why = next(iter(ids.items()))
            print(f"warning: {len(ids)} {name} samples left out of training ({sid}: {why}"
                  f"{', ...' if len(ids) > 1 else ''}); listed in {run_dir / 'log.jsonl'}", file=sys.stderr)


def iteration_seed(seed: int, it: int, rank: int) -> int:
    """The seed of torch's generators at iteration `it` in process `rank`: a resumed run draws what an
    uninterrupted one drew."""
    return int(np.random.SeedSequence([seed, it, rank]).generate_state(1)[0])
