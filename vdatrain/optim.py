"""AdamW with the paper's parameter groups, and its learning-rate schedule.

Groups: backbone parameters at `lr` with weight decay; head parameters (every
module outside `model.backbone`) at `lr * head_lr_mult`; normalisation weights
and biases (LayerNorm and BatchNorm) without weight decay, as DAFormer does for
MiT. Schedule, as mmseg's (which DAFormer/HRDA use): linear decay to 0 over the
whole run, lr = base (1 - it / total), multiplied during the first `warmup_iters`
by a linear warm-up factor rising from `warmup_ratio` (1e-6) to 1; per group.
"""

from __future__ import annotations

import torch
import torch.nn as nn

NORMS = (nn.LayerNorm, nn.BatchNorm2d, nn.GroupNorm, nn.SyncBatchNorm)


def param_groups(model: nn.Module, lr: float, weight_decay: float, head_lr_mult: float) -> list[dict]:
    """Four groups: (backbone | head) x (decayed | norm, no decay). Empty groups are dropped."""
    norm_params = {id(p) for m in model.modules() if isinstance(m, NORMS) for p in m.parameters(recurse=False)}
    backbone = {id(p) for p in model.backbone.parameters()}
    groups: dict[tuple[bool, bool], list] = {}
    for p in model.parameters():
        if p.requires_grad:
            groups.setdefault((id(p) in backbone, id(p) in norm_params), []).append(p)
    out = []
    for (in_backbone, is_norm), params in sorted(groups.items(), key=lambda kv: (not kv[0][0], kv[0][1])):
        out.append({"params": params, "lr": lr if in_backbone else lr * head_lr_mult,
                    "weight_decay": 0.0 if is_norm else weight_decay,
                    "name": f"{'backbone' if in_backbone else 'head'}{'-norm' if is_norm else ''}"})
    return out


def lr_at(it: int, base: float, total_iters: int, warmup_iters: int, warmup_ratio: float) -> float:
    """Learning rate at iteration `it` (0-based) for a group whose rate is `base`."""
    lr = base * max(0.0, 1 - it / total_iters)
    if it < warmup_iters:
        lr *= 1 - (1 - it / warmup_iters) * (1 - warmup_ratio)
    return lr


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, head_lr_mult: float, betas) -> torch.optim.AdamW:
    groups = param_groups(model, lr, weight_decay, head_lr_mult)
    for g in groups:
        g["base_lr"] = g["lr"]
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), weight_decay=weight_decay)


def set_lr(optimizer: torch.optim.Optimizer, it: int, total_iters: int, warmup_iters: int, warmup_ratio: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr_at(it, g["base_lr"], total_iters, warmup_iters, warmup_ratio)
