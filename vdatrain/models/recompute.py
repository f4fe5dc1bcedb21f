"""Activation checkpointing of backbone stages (a recipe's `model.checkpointing`), exact in its results.

A checkpointed stage keeps only its input during the forward pass and runs once more
during the backward pass to rebuild its activations (`torch.utils.checkpoint`,
non-reentrant): peak memory falls by the stage's activations at the price of a second
forward of the backbone. Two things could make the second run differ from the first;
both are handled, so losses, gradients and buffers are those of a run without it:
- random draws (dropout, drop-path) replay the same values: checkpoint restores the
  RNG state it saved before the first run;
- BatchNorm in training mode would update its running statistics (and its batch
  count) a second time: they are put back as they were after the recomputation, which
  normalises with the batch's statistics, as the first run did.

Stages run plainly without gradients (EMA teacher, frozen feature-distance copy,
evaluation) and in eval mode.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint


@contextmanager
def _running_stats_kept(module: nn.Module):
    """BatchNorm running statistics and batch counts as they were before the block. (Switching the
    statistics off instead would change which tensors the recomputation saves, which checkpoint refuses.)"""
    buffers = [b for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
               for b in (m.running_mean, m.running_var, m.num_batches_tracked) if b is not None]
    saved = [b.clone() for b in buffers]
    try:
        yield
    finally:
        with torch.no_grad():
            for b, v in zip(buffers, saved):
                b.copy_(v)


def run_stage(fn: Callable, module: nn.Module, *args, enabled: bool):
    """`fn(*args)`, checkpointed when `enabled`, gradients are being recorded and `module` (whose
    BatchNorm layers `fn` uses) is in training mode."""
    if not (enabled and module.training and torch.is_grad_enabled()):
        return fn(*args)
    calls = 0

    def once_then_frozen(*a):
        nonlocal calls
        calls += 1
        if calls == 1:
            return fn(*a)
        with _running_stats_kept(module):
            return fn(*a)

    return checkpoint(once_then_frozen, *args, use_reentrant=False)
