"""Mix Transformer (SegFormer's MiT encoder), B0 and B5.

Four stages of overlapping patch embeddings (7x7 stride 4, then 3x3 stride 2) and
transformer blocks with spatial-reduction attention (keys and values from a
sr x sr strided conv) and a Mix-FFN (fc -> 3x3 depthwise conv -> GELU -> fc).
Parameter names follow the released `mit_b5.pth` (`patch_embed{1..4}`,
`block{1..4}.{i}.attn.{q,kv,proj,sr,norm}`, `mlp.{fc1,dwconv.dwconv,fc2}`, `norm{1..4}`).

    x (B, 3, H, W) -> [(B, d1, H/4, W/4), (B, d2, H/8, W/8), (B, d3, H/16, W/16), (B, d4, H/32, W/32)]
    (sizes rounded up)
"""

from __future__ import annotations

import re
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from vdatrain.models.backbone import Backbone, Level
from vdatrain.models.recompute import run_stage

HEADS, SR_RATIOS, MLP_RATIO = (1, 2, 5, 8), (8, 4, 2, 1), 4
CONFIGS = {
    "mit_b0": dict(dims=(32, 64, 160, 256), depths=(2, 2, 2, 2), heads=HEADS),
    "mit_b5": dict(dims=(64, 128, 320, 512), depths=(3, 6, 40, 3), heads=HEADS),
    # One block per stage, a quarter of B0's widths: only for `vdatrain check --narrow`, which runs paper
    # recipes at their full input geometry on a CPU (the same code paths, a fraction of the arithmetic).
    "mit_narrow": dict(dims=(8, 16, 40, 64), depths=(1, 1, 1, 1), heads=(1, 1, 1, 1)),
}


class DropPath(nn.Module):
    """Stochastic depth per sample (off in eval)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class OverlapPatchEmbed(nn.Module):
    def __init__(self, patch: int, stride: int, in_ch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_ch, dim, patch, stride, patch // 2)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        x = self.proj(x)
        h, w = x.shape[-2:]
        return self.norm(x.flatten(2).transpose(1, 2)), h, w


class Attention(nn.Module):
    """Multi-head self-attention whose keys and values come from a spatially reduced (sr x sr) map."""

    def __init__(self, dim: int, heads: int, sr: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.sr_ratio = sr
        if sr > 1:
            self.sr = nn.Conv2d(dim, dim, sr, sr)
            self.norm = nn.LayerNorm(dim)

    def forward(self, x, h, w):
        b, n, c = x.shape
        q = self.q(x).reshape(b, n, self.heads, c // self.heads).transpose(1, 2)
        if self.sr_ratio > 1:
            x = self.norm(self.sr(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2))
        k, v = self.kv(x).reshape(b, -1, 2, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class DWConv(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x, h, w):
        b, n, c = x.shape
        return self.dwconv(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)


class MixFFN(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DWConv(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x, h, w):
        return self.fc2(self.act(self.dwconv(self.fc1(x), h, w)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, sr: int, drop_path: float):
        super().__init__()
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.norm1 = norm(dim)
        self.attn = Attention(dim, heads, sr)
        self.drop_path = DropPath(drop_path)
        self.norm2 = norm(dim)
        self.mlp = MixFFN(dim, dim * MLP_RATIO)

    def forward(self, x, h, w):
        x = x + self.drop_path(self.attn(self.norm1(x), h, w))
        return x + self.drop_path(self.mlp(self.norm2(x), h, w))


class MixVisionTransformer(Backbone):
    def __init__(self, variant: str = "mit_b5", drop_path: float = 0.1, checkpointing: bool = False):
        super().__init__()
        if variant not in CONFIGS:
            raise ValueError(f"MiT variant {variant!r}: choose {sorted(CONFIGS)}")
        dims, depths, heads = (CONFIGS[variant][k] for k in ("dims", "depths", "heads"))
        self.checkpointing = checkpointing  # each stage activation-checkpointed in training
        self.levels = tuple(Level(d, 4 * 2 ** i) for i, d in enumerate(dims))
        self.num_layers = 4  # layer-wise decay: stage i (patch_embed{i}, block{i}, norm{i}) is layer i
        rates = torch.linspace(0, drop_path, sum(depths), device="cpu").tolist()
        start = 0
        for i in range(4):
            setattr(self, f"patch_embed{i + 1}",
                    OverlapPatchEmbed(7 if i == 0 else 3, 4 if i == 0 else 2, 3 if i == 0 else dims[i - 1], dims[i]))
            setattr(self, f"block{i + 1}", nn.ModuleList(
                Block(dims[i], heads[i], SR_RATIOS[i], rates[start + j]) for j in range(depths[i])))
            setattr(self, f"norm{i + 1}", nn.LayerNorm(dims[i], eps=1e-6))
            start += depths[i]
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def layer_id(self, name: str) -> int:
        return int(re.match(r"\D+(\d)", name)[1])

    def stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Stage i (1..4): (B, C, H, W) -> (B, d_i, ceil(H/s), ceil(W/s))."""
        x, h, w = getattr(self, f"patch_embed{i}")(x)
        for block in getattr(self, f"block{i}"):
            x = block(x, h, w)
        return getattr(self, f"norm{i}")(x).transpose(1, 2).reshape(x.shape[0], -1, h, w)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i in range(1, 5):
            x = run_stage(partial(self.stage, i), self, x, enabled=self.checkpointing)
            outs.append(x)
        return outs
