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
Loading is strict: missing, unexpected or mis-shaped keys are an error listing them.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from vdatrain.models.weights import WeightsError, check_keys, safe_load

BRANCHES = {"student": "model.", "teacher": "ema_model."}


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


def load_checkpoint_weights(model: torch.nn.Module, path, branch: str = "student", may_lack: tuple = (),
                            may_drop: tuple = ()) -> str:
    """Load a `vdatrain fit` checkpoint or a released mmseg checkpoint into `model`; returns the format.

    Keys under the prefixes in `may_lack` may be absent (e.g. "attention." when a single-scale model
    initialises an HRDA one); they keep their initialisation. Checkpoint keys under `may_drop` that
    the model does not have are left out (an HRDA checkpoint initialising a single-scale model)."""
    path = Path(path)
    ckpt = safe_load(path)  # never unpickles code: tensors, plain containers, numpy values
    if isinstance(ckpt, dict) and "model" in ckpt and "iteration" in ckpt:
        if branch == "teacher":
            if "teacher" not in ckpt.get("method", {}):
                raise WeightsError(f"{path}: this run has no teacher (not a self-training run)")
            state, fmt = ckpt["method"]["teacher"], "vdatrain (teacher)"
        else:
            state, fmt = ckpt["model"], "vdatrain"
    else:
        state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
        if not isinstance(state, dict) or not is_mmseg(state):
            raise WeightsError(f"{path}: neither a vdatrain checkpoint nor an mmseg segmentor state dict")
        try:
            state, fmt = map_mmseg_keys(state, branch), f"mmseg ({branch})"
        except WeightsError as e:
            raise WeightsError(f"{path}: {e}") from None
    own = model.state_dict()
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")
             and not (may_drop and k.startswith(may_drop) and k not in own)}
    check_keys(state, own, f"{path} ({fmt}) does not fit the recipe's model", may_lack)
    model.load_state_dict(state, strict=False)
    return fmt
