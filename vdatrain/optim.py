"""AdamW with the paper's parameter groups, and its learning-rate schedule.

Groups: backbone parameters at `lr` with weight decay; head parameters (every
module outside `model.backbone`, except the modules a model declares in `backbone_rate`,
e.g. the ACCEL fusion) at
`lr * head_lr_mult`; normalisation parameters without weight decay, chosen by
`norm_weight_decay`:
- "by_name" (the reference: mmcv's custom keys match parameter NAMES): parameters
  whose name contains "norm" or "pos_block" (MiT's LayerNorms) get weight decay 0;
  every other normalisation layer (ResNet-101's BatchNorms, the stem's, the
  DAFormer head's) keeps it;
- "zero": the weights and biases of every LayerNorm and BatchNorm get 0.
Schedule, as mmseg's (which DAFormer/HRDA use): linear decay to 0 over the whole
run, lr = base (1 - it / total), multiplied during the first `warmup_iters` by a
linear warm-up factor rising from `warmup_ratio` (1e-6) to 1; per group.

Parts of a method may bring optimisers of their own (`PartOptimizer`: the video
discriminator's Adam and poly schedule); the loop steps them after the model's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn

@dataclass
class PartOptimizer:
    """An optimiser a method's part brings besides the model's.

    name       its loss is logged as `loss_<name>`
    optimizer  over `module`'s parameters (their gradients are averaged over the processes, like DDP's)
    loss       () -> scalar, computed after the model's step; None: nothing to learn this iteration
    lr         iteration -> the learning rate of every group
    """
    name: str
    optimizer: torch.optim.Optimizer
    module: nn.Module
    loss: Callable[[], "torch.Tensor | None"]
    lr: Callable[[int], float]

    def step(self, it: int, d=None) -> "torch.Tensor | None":
        """One update at iteration `it`: the scheduled rate, the loss's gradients averaged over the processes of
        `d` (a `vdatrain.distributed.Dist`), a step. Returns the detached loss, None when there was none."""
        from vdatrain.distributed import average_gradients

        for group in self.optimizer.param_groups:
            group["lr"] = self.lr(it)
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss()
        if loss is None:
            return None
        loss.backward()
        if d is not None:
            average_gradients(self.module, d)
        self.optimizer.step()
        return loss.detach()


NORMS = (nn.LayerNorm, nn.BatchNorm2d, nn.GroupNorm, nn.SyncBatchNorm)
NORM_WEIGHT_DECAY = ("by_name", "zero")


def _no_decay(model: nn.Module, rule: str) -> set[int]:
    if rule == "by_name":
        return {id(p) for name, p in model.named_parameters() if "norm" in name or "pos_block" in name}
    if rule == "zero":
        return {id(p) for m in model.modules() if isinstance(m, NORMS) for p in m.parameters(recurse=False)}
    raise ValueError(f"norm_weight_decay {rule!r}: choose from {', '.join(NORM_WEIGHT_DECAY)}")


def param_groups(model: nn.Module, lr: float, weight_decay: float, head_lr_mult: float,
                 norm_weight_decay: str = "by_name", layer_decay: float = 1.0) -> list[dict]:
    """Up to four groups: (backbone lr | head lr) x (decayed | no decay), named "backbone", "backbone-norm",
    "head", "head-norm"; the model's `backbone_rate` modules (the ACCEL fusion in the reference) join
    the backbone's rate. The backbone's declared `no_weight_decay()` parameters (a ViT's position embedding
    and tokens) join the no-decay groups whatever the norm rule.
    With `layer_decay` < 1 the backbone's groups split by depth (`Backbone.layer_id`): layer l of L takes
    lr * layer_decay ** (L - l), in groups named "backbone.l<l>" and "backbone.l<l>-norm".
    Empty groups are dropped."""
    backbone = model.backbone
    no_decay = _no_decay(model, norm_weight_decay)
    no_decay |= {id(p) for name, p in backbone.named_parameters() if name in backbone.no_weight_decay()}
    depth = {id(p): backbone.layer_id(name) for name, p in backbone.named_parameters()} if layer_decay < 1 else {}
    base = {id(p) for m in (backbone, *model.backbone_rate) for p in m.parameters()}
    layers = backbone.num_layers
    groups: dict[tuple, list] = {}
    for p in model.parameters():
        if p.requires_grad:
            at_base = id(p) in base
            layer = depth.get(id(p), layers) if at_base and depth else None
            groups.setdefault((at_base, layer, id(p) in no_decay), []).append(p)
    out = []
    order = sorted(groups.items(), key=lambda kv: (not kv[0][0], -1 if kv[0][1] is None else kv[0][1], kv[0][2]))
    for (at_base, layer, is_norm), params in order:
        rate = lr if at_base else lr * head_lr_mult
        name = "backbone" if at_base else "head"
        if layer is not None:
            rate, name = rate * layer_decay ** (layers - layer), f"backbone.l{layer}"
        out.append({"params": params, "lr": rate, "weight_decay": 0.0 if is_norm else weight_decay,
                    "name": f"{name}{'-norm' if is_norm else ''}"})
    return out


def lr_at(it: int, base: float, total_iters: int, warmup_iters: int, warmup_ratio: float) -> float:
    """Learning rate at iteration `it` (0-based) for a group whose rate is `base`."""
    lr = base * max(0.0, 1 - it / total_iters)
    if it < warmup_iters:
        lr *= 1 - (1 - it / warmup_iters) * (1 - warmup_ratio)
    return lr


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, head_lr_mult: float, betas,
                    norm_weight_decay: str = "by_name", layer_decay: float = 1.0) -> torch.optim.AdamW:
    groups = param_groups(model, lr, weight_decay, head_lr_mult, norm_weight_decay, layer_decay)
    for g in groups:
        g["base_lr"] = g["lr"]
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), weight_decay=weight_decay)


def set_lr(optimizer: torch.optim.Optimizer, it: int, total_iters: int, warmup_iters: int, warmup_ratio: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr_at(it, g["base_lr"], total_iters, warmup_iters, warmup_ratio)
