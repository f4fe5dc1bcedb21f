"""Released mmseg-format DAFormer / HRDA / MIC checkpoints -> our models (for evaluation).

Their `state_dict` holds three models under prefixes: `model.` (the student, which the
papers evaluate), `ema_model.` (the teacher) and `imnet_model.` (the frozen ImageNet
copy for the feature distance, never needed here). Key map, after the prefix:

| mmseg | ours |
|---|---|
| `backbone.*` | `backbone.*` (mmcv ResNet-v1c and SegFormer MiT names are ours) |
| `decode_head.head.*` (HRDA) / `decode_head.*` (single scale) | `head.*` |
| `decode_head.scale_attention.*` (HRDA) | `attention.*` |
| `<head>.aspp_modules.{i}.conv.{weight,bias}` of a DeepLabV2 head | `<head>.aspp.{i}.{weight,bias}` |

DAFormer heads already use mmseg's names (`embed_layers`, `fuse_layer`, `conv_seg`).
Loading is strict: missing, unexpected or mis-shaped keys are an error listing them. Which file holds
what (our run checkpoints, or these) is `vdatrain.checkpoint`'s business.
"""

from __future__ import annotations

import re

import torch

from vdatrain.models.weights import WeightsError, check_keys

BRANCHES = {"student": "model.", "teacher": "ema_model."}
HRDA_ONLY = ("attention.",)  # keys only a multi-resolution (HRDA) model has


def is_mmseg(state: dict) -> bool:
    return any(k.startswith(("model.decode_head.", "decode_head.")) for k in state)


def map_mmseg_keys(state: dict, branch: str = "student") -> dict:
    """The named branch of an mmseg state dict, under our model's key names."""
    prefix = BRANCHES[branch]
    if any(k.startswith(prefix) for k in state):
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    elif any(k.startswith(tuple(BRANCHES.values())) for k in state):
        raise WeightsError(f"no {branch} weights ({prefix}*) in this checkpoint")
    out = {}
    for key, value in state.items():
        key = re.sub(r"^decode_head\.scale_attention\.", "attention.", key)
        key = re.sub(r"^decode_head\.head\.", "head.", key)
        key = re.sub(r"^decode_head\.", "head.", key)
        key = re.sub(r"^(head|attention)\.aspp_modules\.(\d+)\.conv\.(weight|bias)$", r"\1.aspp.\2.\3", key)
        out[key] = value
    return out


def load_state(model: torch.nn.Module, state: dict, what: str, may_lack: tuple = (), may_drop: tuple = ()) -> None:
    """Load `state` into `model` strictly: missing, unexpected or mis-shaped keys are a WeightsError starting with
    `what`. Keys under the prefixes in `may_lack` may be absent (e.g. "attention." when a single-scale model
    initialises an HRDA one); they keep their initialisation. Keys under `may_drop` that the model does not
    have are left out (an HRDA checkpoint initialising a single-scale model)."""
    own = model.state_dict()
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")
             and not (may_drop and k.startswith(may_drop) and k not in own)}
    check_keys(state, own, what, may_lack)
    model.load_state_dict(state, strict=False)
