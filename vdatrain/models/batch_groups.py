"""Several batches in one forward, each normalised as if it ran alone: the teacher's `per_window` statistics.

The EMA teacher predicts with BatchNorm in training mode (DACS): every forward normalises with the
statistics of its own batch. The reference stacked all sliding detail windows (and a two-frame
teacher's two frames) into one forward, so they share statistics (`adapt.teacher_statistics: joint`).
`per_window` normalises each window (and frame) on its own: inside `batch_groups(model, size)`, every
training-mode BatchNorm normalises each run of `size` consecutive samples with that run's statistics
(the same kernel on the same samples as a separate forward), while every other layer runs once on the
whole stack.

What stays identical: every output, to the convolution's float rounding (the same value in float32 on
the CPU; a GPU may pick another convolution algorithm for the larger batch). What changes: the order
in which the teacher's running statistics are updated. The teacher never reads them (it always
predicts in training mode); they are saved with the checkpoint.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn as nn


def _grouped_forward(norm: nn.modules.batchnorm._BatchNorm, size: int, x: torch.Tensor) -> torch.Tensor:
    forward = type(norm).forward
    if x.shape[0] <= size or x.shape[0] % size:
        return forward(norm, x)
    return torch.cat([forward(norm, group) for group in x.split(size)])


@contextmanager
def batch_groups(model: nn.Module, size: int):
    """Within the block, training-mode BatchNorm layers of `model` normalise each `size` consecutive samples of
    their input on their own. Layers in eval mode use running statistics and need nothing."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    for m in norms:
        m.forward = lambda x, m=m: _grouped_forward(m, size, x)  # an instance attribute shadows the class's
        m.batch_group = size
    try:
        yield
    finally:
        for m in norms:
            del m.forward, m.batch_group
