"""Any timm model as a backbone: DINOv2, DINOv3, EVA-02 and other plain ViTs, or a hierarchical network.

A recipe names the model (`model.backbone.timm`, e.g. `vit_large_patch16_dinov3`); timm builds it without
weights (`pretrained=False`: nothing is downloaded; `model.pretrained` loads a file through
`vdatrain.models.weights`).

Plain ViTs (every block at the patch stride p) take their features from four blocks (`blocks`, default four
evenly spaced, the last included), each with the final norm applied, as DINOv2's `get_intermediate_layers`
does. `pyramid: simple` turns them into maps at p/4, p/2, p and 2p (BEiT's and ViTDet's simple feature
pyramid: two 2x2 transposed convolutions, one, none, a 2x2 max-pool), so the DAFormer head and HRDA see the
four reductions of MiT (4, 8, 16, 32 for p = 16); `pyramid: none` returns the last block alone (one level at
stride p). Inputs of any size: the image is padded at the bottom and right to whole patches (mmseg's ViT does
the same) and every map is cut back to ceil(H / reduction), so a detail crop or a BDD frame of 360 rows
works with p = 16. `patch_size` rebuilds the patch embedding at another size (DINOv2's 14 -> 16; weights
are resampled to it when they load).

Hierarchical models (ConvNeXt, Swin, ...) give one map per stage (`forward_intermediates`), as their
`feature_info` declares; they do not pad: their `size_divisibility` is their largest reduction. Every model
keeps timm's own parameter names (under `model.`), so timm's files load as they are.

Models pretrained with other than ImageNet's mean and std (EVA-02's CLIP statistics) take ImageNet-normalised
input like every backbone here and re-normalise it with one per-channel affine map: the pipeline, the
augmentation and MIC's mean-colour masks stay as they are.
"""

from __future__ import annotations

import contextlib
import io
import math
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

from vdatrain.data.normalise import IMAGENET_MEAN, IMAGENET_STD
from vdatrain.models.backbone import Backbone, Level
from vdatrain.models.weights import WeightsError


class SimplePyramid(nn.Module):
    """Four (B, D, h, w) maps at the patch stride p -> reductions p/4, p/2, p, 2p, D channels each."""

    def __init__(self, dim: int):
        super().__init__()
        self.up4 = nn.Sequential(nn.ConvTranspose2d(dim, dim, 2, 2), nn.BatchNorm2d(dim), nn.GELU(),
                                 nn.ConvTranspose2d(dim, dim, 2, 2))
        self.up2 = nn.ConvTranspose2d(dim, dim, 2, 2)
        self.down2 = nn.MaxPool2d(2, ceil_mode=True)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.up4(feats[0]), self.up2(feats[1]), feats[2], self.down2(feats[3])]


def default_blocks(depth: int) -> list[int]:
    """Four evenly spaced block indices ending with the last (24 blocks: 5, 11, 17, 23)."""
    return [max(0, round((i + 1) * depth / 4) - 1) for i in range(4)]


def _create(name: str, **kwargs):
    import timm

    try:
        return timm.create_model(name, pretrained=False, **kwargs)
    except RuntimeError as e:  # an unknown name
        raise ValueError(f"model.backbone.timm: {e}") from None


class TimmBackbone(Backbone):
    """`spec`: a recipe's `model.backbone` (`vdatrain.recipe.schema.BackboneSpec`)."""

    def __init__(self, spec, checkpointing: bool = False):
        super().__init__()
        arch = {k: v for k in ("embed_dim", "depth", "num_heads", "patch_size", "img_size") if (v := getattr(spec, k))}
        try:  # plain ViTs (timm's VisionTransformer, Eva, ...) accept any input size
            self.model = _create(spec.timm, num_classes=0, drop_path_rate=spec.drop_path, dynamic_img_size=True,
                                 **arch)
            self.plain = True
        except TypeError:
            if arch:
                raise ValueError(f"model.backbone: {', '.join(arch)} apply to plain ViTs only, and "
                                 f"{spec.timm} is not one") from None
            self.model = _create(spec.timm, num_classes=0, drop_path_rate=spec.drop_path)
            self.plain = False
            if not hasattr(self.model, "forward_intermediates"):
                raise ValueError(f"model.backbone.timm: {spec.timm} gives no intermediate features in this timm")
        self.name = spec.timm
        cfg = getattr(self.model, "pretrained_cfg", {}) or {}
        MEAN, STD = tuple((IMAGENET_MEAN / 255).tolist()), tuple((IMAGENET_STD / 255).tolist())
        mean, std = tuple(cfg.get("mean", MEAN)), tuple(cfg.get("std", STD))
        # x' = (x * STD + MEAN - mean) / std, one multiply-add per channel, only where the statistics differ
        self.renormalise = any(abs(a - b) > 1e-4 for a, b in zip(mean + std, MEAN + STD))
        self.register_buffer("scale", torch.tensor([a / b for a, b in zip(STD, std)]).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("shift", torch.tensor([(a - b) / c for a, b, c in zip(MEAN, mean, std)]).view(1, 3, 1, 1),
                             persistent=False)
        self.classifier = cfg.get("classifier")
        if self.plain:
            self._plain_levels(spec)
        else:
            info = self.model.feature_info  # timm's declaration: a dict per stage
            self.levels = tuple(Level(i["num_chs"], i["reduction"]) for i in info)
            self.size_divisibility = max(lv.reduction for lv in self.levels)
            self.pyramid = None
        self.set_checkpointing(checkpointing)

    def _plain_levels(self, spec) -> None:
        depth, dim = len(self.model.blocks), self.model.embed_dim
        p = self.model.patch_embed.patch_size
        self.patch = p[0] if isinstance(p, (tuple, list)) else int(p)
        self.blocks = list(spec.blocks) if spec.blocks else default_blocks(depth)
        bad = [b for b in self.blocks if not 0 <= b < depth]
        if bad:
            raise ValueError(f"model.backbone.blocks: {bad} outside the {depth} blocks of {spec.timm}")
        if spec.pyramid == "simple":
            if len(self.blocks) != 4:
                raise ValueError(f"model.backbone.blocks: the simple pyramid takes 4 blocks, got {self.blocks}")
            if self.patch % 4:
                raise ValueError(f"model.backbone.pyramid: simple needs a patch size divisible by 4 ({spec.timm} "
                                 f"has {self.patch}: set model.backbone.patch_size, e.g. 16)")
            self.pyramid = SimplePyramid(dim)
            self.levels = tuple(Level(dim, r) for r in (self.patch // 4, self.patch // 2, self.patch, 2 * self.patch))
            self.fresh_prefixes = ("pyramid.",)
        else:
            self.pyramid = None
            self.blocks = self.blocks[-1:]
            self.levels = (Level(dim, self.patch),)
        self.num_layers = depth + 1  # 0: embeddings and tokens, 1..depth: blocks, depth + 1: final norm, pyramid

    def no_weight_decay(self) -> set[str]:
        """timm's own list (position embeddings, class and register tokens), as this module names them."""
        declared = self.model.no_weight_decay() if hasattr(self.model, "no_weight_decay") else set()
        names = {n for n, _ in self.named_parameters()}
        return {f"model.{n}" for n in declared} & names

    def layer_id(self, name: str) -> int:
        if not self.plain:
            return self.num_layers  # hierarchical models take one rate (layer-wise decay is for ViT blocks)
        rest = name.removeprefix("model.")
        if rest.startswith("blocks."):
            return int(rest.split(".")[1]) + 1
        if rest.startswith(("cls_token", "reg_token", "pos_embed", "patch_embed", "mask_token")):
            return 0
        return self.num_layers

    def set_checkpointing(self, on: bool) -> None:
        self.checkpointing = on
        self.model.set_grad_checkpointing(on)

    def fit_weights(self, state: dict) -> dict:
        """A timm or Meta-layout state dict -> this module's names. timm's own converter for the architecture
        renames Meta's original DINOv2 / DINOv3 / EVA keys and resizes position and patch embeddings to this
        model; the classifier is left out."""
        if any(k.startswith("pyramid.") for k in state) or (state and all(k.startswith("model.") for k in state)):
            return state  # saved from this module already
        if self.classifier:
            state = {k: v for k, v in state.items() if not k.startswith(f"{self.classifier}.")}
        if self.plain:
            own = dict(self.model.named_parameters())
            biased = [k for k, v in state.items() if k.endswith("attn.qkv.bias") and v.abs().max() > 0
                      and k not in own and k.replace("qkv.bias", "q_bias") not in own]
            if biased:  # timm's converter would drop them
                raise WeightsError(f"{biased[0]} holds non-zero biases that {self.name} has no place for: take its "
                                   f"variant with biases ({self.name}_qkvb)")
            convert = getattr(sys.modules[type(self.model).__module__], "checkpoint_filter_fn", None)
            if convert is not None:
                with contextlib.redirect_stdout(io.StringIO()):  # it prints what it resizes
                    state = convert(state, self.model)
        return {f"model.{k}": v for k, v in state.items()}

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h, w = x.shape[-2:]
        if self.renormalise:
            x = x * self.scale.to(x.dtype) + self.shift.to(x.dtype)
        if not self.plain:
            return self.model.forward_intermediates(x, indices=len(self.levels), intermediates_only=True)
        pad_h, pad_w = -h % self.patch, -w % self.patch
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        wanted = sorted(set(self.blocks))
        maps = self.model.forward_intermediates(x, indices=wanted, norm=True, intermediates_only=True)
        by_block = dict(zip(wanted, maps))
        feats = [by_block[b] for b in self.blocks]
        if self.pyramid is not None:
            feats = self.pyramid(feats)
        return [f[..., :math.ceil(h / lv.reduction), :math.ceil(w / lv.reduction)] for f, lv in zip(feats, self.levels)]
