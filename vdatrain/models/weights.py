"""Load ImageNet backbone weights in the formats users have, with strict key checking.

Formats, told apart by their keys:
- mmcv ResNet-v1c (`resnet101_v1c-*.pth`): `stem.{0,1,3,4,6,7}.*`, `layer{1..4}.*`;
- torchvision ResNet (`resnet101-*.pth`): `conv1.*`, `bn1.*`, `layer{1..4}.*`, `fc.*` (classifier, dropped);
- SegFormer MiT (`mit_b5.pth`): `patch_embed{1..4}.*`, `block{1..4}.*`, `norm{1..4}.*`, `head.*` (dropped).
Wrappers (`state_dict`, `model`) and prefixes (`module.`, `backbone.`) are unwrapped.
Anything else that does not match the backbone exactly is an error that lists the keys.
"""

from __future__ import annotations

from pathlib import Path

import torch

CLASSIFIER_PREFIXES = ("fc.", "head.")


class WeightsError(ValueError):
    """A checkpoint that does not fit; the message names the file and the keys."""


def _unwrap(ckpt) -> dict:
    for key in ("state_dict", "model"):
        if isinstance(ckpt, dict) and key in ckpt and isinstance(ckpt[key], dict):
            ckpt = ckpt[key]
    if not isinstance(ckpt, dict):
        raise WeightsError("no state dict inside")
    for prefix in ("module.", "backbone."):
        if ckpt and all(k.startswith(prefix) for k in ckpt):
            ckpt = {k[len(prefix):]: v for k, v in ckpt.items()}
    return ckpt


def detect_format(state: dict) -> str:
    if any(k.startswith("stem.") for k in state):
        return "mmcv-resnet-v1c"
    if "conv1.weight" in state:
        return "torchvision-resnet"
    if any(k.startswith("patch_embed1.") for k in state):
        return "segformer-mit"
    return "unknown"


def _few(keys) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:6]) + (f" (+{len(keys) - 6} more)" if len(keys) > 6 else "")


def check_keys(state: dict, own: dict, what: str, may_lack: tuple = ()) -> None:
    """Raise a WeightsError starting with `what` that lists missing, unexpected and mis-shaped keys of
    `state` against the model's `own` state dict (BatchNorm counters and keys under `may_lack` may be absent)."""
    need = {k for k in own if not k.endswith("num_batches_tracked") and not (may_lack and k.startswith(may_lack))}
    missing, unexpected = need - set(state), set(state) - set(own)
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in need & set(state)
              if state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = [f"{name} {len(keys)}: {_few(keys)}" for name, keys in
                 (("missing", missing), ("unexpected", unexpected), ("shape mismatches", shapes)) if keys]
        raise WeightsError(f"{what}: " + "; ".join(parts))


def _numpy_globals() -> list:
    """numpy arrays, scalars and dtypes, under their numpy 1 and 2 module names: what mmcv/mmseg checkpoints keep
    in their `meta` (seed, PALETTE). Nothing else beyond tensors and plain containers is unpickled."""
    import numpy as np

    core = np._core.multiarray
    out = [np.ndarray, np.dtype, *(type(np.dtype(c)) for c in "?bhilqBHILQefdgFDGSUV")]
    for name, obj in (("_reconstruct", core._reconstruct), ("scalar", core.scalar)):
        out += [(obj, f"numpy.core.multiarray.{name}"), (obj, f"numpy._core.multiarray.{name}")]
    return out


def safe_load(path) -> object:
    """`torch.load` with `weights_only=True`: tensors, plain containers and numpy values only, so a crafted
    file cannot run code; anything else is a WeightsError naming the file."""
    import pickle

    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "global" not in str(e).lower():  # garbage or a file cut short, not a refused Python object
            raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__})") from None
        what = next((line.strip() for line in str(e).splitlines() if "GLOBAL" in line or "global" in line), "")
        raise WeightsError(f"{path}: holds Python objects that weights do not need, refused (unpickling them could "
                           f"run code from the file){': ' + what[:160] if what else ''}; save a plain state dict "
                           f"(torch.save(model.state_dict(), ...))") from None
    except Exception as e:  # torch.load raises many types for files that are not checkpoints
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__})") from None


def load_backbone(backbone: torch.nn.Module, path) -> str:
    """Load `path` into `backbone` strictly (classifier weights excepted); returns the detected format."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    state = safe_load(path)
    try:
        state = _unwrap(state)
    except WeightsError as e:
        raise WeightsError(f"{path}: {e}") from None
    fmt = detect_format(state)
    state = {k: v for k, v in state.items() if not k.startswith(CLASSIFIER_PREFIXES) and "num_batches_tracked" not in k}
    check_keys(state, backbone.state_dict(), f"{path} ({fmt} keys) does not fit {type(backbone).__name__}")
    backbone.load_state_dict(state, strict=False)  # num_batches_tracked counters are not weights
    return fmt
