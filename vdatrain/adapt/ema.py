"""The mean teacher: an exponential moving average of the student's parameters.

theta_T <- a_t theta_T + (1 - a_t) theta_S with a_t = min(1 - 1 / (t + 1), alpha):
the early teacher follows the student closely, later it averages over ~1/(1 - alpha)
iterations. Parameters only; BatchNorm buffers are the teacher's own (it predicts in
training mode, normalising with the target batch's statistics, as DACS does), while
dropout and drop-path are off so pseudo-labels are not noisy.

"Training mode for normalisation, evaluation mode for the rest": the teacher's modules are put in
evaluation mode except its BatchNorm layers, so every stochastic layer of any backbone (dropout,
drop-path, stochastic depth, whatever its class is called) is off without being looked up by name.
The reference switched off dropout and drop-path by type; the models it had hold no other layer that
behaves differently in training, so the result is the same.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from vdatrain.models.batch_groups import batch_groups


def ema_alpha(it: int, alpha: float) -> float:
    """The averaging weight at iteration `it` (the first update is it = 1)."""
    return min(1 - 1 / (it + 1), alpha)


def plain_batchnorm(model: nn.Module) -> nn.Module:
    """`model` with every SyncBatchNorm (a DDP student's, on GPUs) replaced by a BatchNorm2d holding the same
    parameters and buffers: the teacher predicts the global batch in every process (`methods.self_training`), so
    it needs no synchronisation per BatchNorm call."""
    if isinstance(model, nn.SyncBatchNorm):
        plain = nn.BatchNorm2d(model.num_features, model.eps, model.momentum, model.affine,
                               model.track_running_stats)
        plain.load_state_dict(model.state_dict())
        return plain.to(next(model.buffers(), torch.empty(0)).device)
    for name, child in model.named_children():
        setattr(model, name, plain_batchnorm(child))
    return model


def teacher_mode(model: nn.Module) -> None:
    """Evaluation mode for every module but the BatchNorm layers, which normalise with batch statistics."""
    model.eval()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.train()


class EMATeacher:
    """`statistics`: "joint" (each prediction one forward, BatchNorm statistics of all its sliding windows and
    frames together: the reference) or "per_window" (each window and frame normalised on its own)."""

    def __init__(self, student: nn.Module, alpha: float = 0.999, statistics: str = "joint"):
        self.model = plain_batchnorm(copy.deepcopy(student))
        self.model.requires_grad_(False)
        self.alpha, self.statistics = alpha, statistics

    @torch.no_grad()
    def update(self, student: nn.Module, it: int) -> None:
        a = ema_alpha(it, self.alpha)
        teacher = list(self.model.parameters())
        # one multi-tensor kernel per step instead of two launches for each of ~326 tensors (R101 + heads)
        torch._foreach_mul_(teacher, a)
        torch._foreach_add_(teacher, [s.detach() for s in student.parameters()], alpha=1 - a)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, partner=None) -> torch.Tensor:
        """The teacher's whole-crop logits for (B, 3, H, W) (`predict` of the model contract): training-mode
        normalisation, no dropout or drop-path. `partner`: a two-frame (ACCEL) teacher's other frame (`Partner`).
        One forward: the statistics of the B images' detail windows (and frames) together, or, "per_window",
        of each window's B images (`models.batch_groups`)."""
        teacher_mode(self.model)
        if self.statistics == "joint":
            return self.model.predict(x, partner=partner)
        with batch_groups(self.model, len(x)):
            return self.model.predict(x, partner=partner)
