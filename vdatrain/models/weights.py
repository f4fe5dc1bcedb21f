"""Load ImageNet backbone weights in the formats users have, with strict key checking.

Formats, told apart by their keys (`.pth` read with weights_only, `.safetensors` with the safetensors package):
- mmcv ResNet-v1c (`resnet101_v1c-*.pth`): `stem.{0,1,3,4,6,7}.*`, `layer{1..4}.*`;
- timm ResNet-v1c (`resnet101c`, gluon): the same network with the deep stem under `conv1.{0,1,3,4,6}.*` and
  `bn1.*` (renamed to mmcv's `stem.*`), `fc.*` dropped;
- torchvision ResNet (`resnet101-*.pth`): `conv1.*`, `bn1.*`, `layer{1..4}.*`, `fc.*` (classifier, dropped);
  it fits the 7x7-stem models (`deeplabv2_r101_tv`), and the error says so when given to a v1c model;
- SegFormer MiT (`mit_b5.pth`): `patch_embed{1..4}.*`, `block{1..4}.*`, `norm{1..4}.*`, `head.*` (dropped);
- Hugging Face SegFormer MiT (`nvidia/mit-b5`, `model.safetensors` or `pytorch_model.bin`, and the encoders of
  `SegformerFor*` checkpoints): `[segformer.]encoder.patch_embeddings.{i}`, `encoder.block.{i}.{j}`,
  `encoder.layer_norm.{i}`; key and value projections are joined into MiT's `kv`; classifier and decode
  head dropped.
- timm ViT / EVA files (`.safetensors`, `.pth`) and Meta's original DINOv2 / DINOv3 / EVA-02 releases
  (`mask_token`, `register_tokens` / `storage_tokens`, `ls1.gamma`, `qkv.bias` with its mask): the timm
  backbone's `fit_weights` renames them through timm's converter for the architecture and resizes the
  position and patch embeddings to the model (`vdatrain.models.timm_backbone`);
- Hugging Face DINOv2 (`Dinov2Model`, with registers) and DINOv3 (`DINOv3ViTModel`) `model.safetensors`: renamed
  to timm's names, query, key and value joined.
Wrappers (`state_dict`, `model`) and prefixes (`module.`, `backbone.`) are unwrapped. Each format is a
`WeightFormat` (how to tell it, how to rename its keys to ours) registered in `WEIGHT_FORMATS`, tried in
registration order; a new one is one more registration.
Anything else that does not match the backbone exactly is an error that lists the keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from vdatrain.registry import Registry

CLASSIFIER_PREFIXES = ("fc.", "head.")


class WeightsError(ValueError):
    """A checkpoint that does not fit; the message names the file and the keys."""


def _unwrap(ckpt) -> dict:
    for key in ("state_dict", "model"):
        if isinstance(ckpt, dict) and key in ckpt and isinstance(ckpt[key], dict):
            ckpt = ckpt[key]
    if not isinstance(ckpt, dict):
        raise WeightsError("no state dict inside")
    odd = [repr(k) for k in ckpt if not isinstance(k, str)][:3]
    if odd:
        raise WeightsError(f"keys that are not parameter names ({', '.join(odd)}): not a state dict")
    for prefix in ("module.", "backbone."):
        if ckpt and all(k.startswith(prefix) for k in ckpt):
            ckpt = {k[len(prefix):]: v for k, v in ckpt.items()}
    return ckpt


TIMM_STEM = {"conv1.0.": "stem.0.", "conv1.1.": "stem.1.", "conv1.3.": "stem.3.", "conv1.4.": "stem.4.",
             "conv1.6.": "stem.6.", "bn1.": "stem.7."}


def from_timm_resnet(state: dict) -> dict:
    """timm's deep-stem names -> mmcv's (the rest of the network is named alike)."""
    out = {}
    for k, v in state.items():
        prefix = next((p for p in TIMM_STEM if k.startswith(p)), None)
        out[TIMM_STEM[prefix] + k[len(prefix):] if prefix else k] = v
    return out


_HF_BLOCK = {"layer_norm_1.": "norm1.", "layer_norm_2.": "norm2.", "attention.self.query.": "attn.q.",
             "attention.self.sr.": "attn.sr.", "attention.self.layer_norm.": "attn.norm.",
             "attention.output.dense.": "attn.proj.", "mlp.dense1.": "mlp.fc1.", "mlp.dwconv.dwconv.": "mlp.dwconv.dwconv.",
             "mlp.dense2.": "mlp.fc2."}


# transformers 5 names its SegFormer modules anew in memory (a state dict saved from one), while the files on
# the Hub and its save_pretrained keep the names above: back to those (transformers' conversion_mapping, inverted)
_HF5_TO_HF = [(r"stages\.(\d+)\.patch_embeddings\.", r"encoder.patch_embeddings.\1."),
              (r"stages\.(\d+)\.blocks\.", r"encoder.block.\1."), (r"stages\.(\d+)\.layer_norm", r"encoder.layer_norm.\1"),
              (r"attention\.q_proj", "attention.self.query"), (r"attention\.k_proj", "attention.self.key"),
              (r"attention\.v_proj", "attention.self.value"),
              (r"attention\.sequence_reduction\.sequence_reduction", "attention.self.sr"),
              (r"attention\.sequence_reduction\.layer_norm", "attention.self.layer_norm"),
              (r"attention\.o_proj", "attention.output.dense"), (r"mlp\.fc1", "mlp.dense1"), (r"mlp\.fc2", "mlp.dense2"),
              (r"layernorm_before", "layer_norm_1"), (r"layernorm_after", "layer_norm_2")]


def from_hf5_segformer(state: dict) -> dict:
    import re

    out = {}
    for k, v in state.items():
        for pattern, repl in _HF5_TO_HF:
            k = re.sub(pattern, repl, k)
        out[k] = v
    return from_hf_segformer(out)


def from_hf_segformer(state: dict) -> dict:
    """Hugging Face SegFormer encoder names -> MiT's (stages numbered from 1; key and value joined as kv).
    Keys outside the encoder (a classifier, a decode head) are left out."""
    import re

    prefix = "segformer.encoder." if any(k.startswith("segformer.encoder.") for k in state) else "encoder."
    out, kv = {}, {}
    for key, v in state.items():
        if not key.startswith(prefix):
            continue
        k = key[len(prefix):]
        if m := re.fullmatch(r"patch_embeddings\.(\d)\.(proj|layer_norm)\.(weight|bias)", k):
            out[f"patch_embed{int(m[1]) + 1}.{'proj' if m[2] == 'proj' else 'norm'}.{m[3]}"] = v
        elif m := re.fullmatch(r"layer_norm\.(\d)\.(weight|bias)", k):
            out[f"norm{int(m[1]) + 1}.{m[2]}"] = v
        elif m := re.fullmatch(r"block\.(\d)\.(\d+)\.(.+)", k):
            head, rest = f"block{int(m[1]) + 1}.{m[2]}.", m[3]
            if rest.startswith(("attention.self.key.", "attention.self.value.")):
                kv.setdefault(head, {})[rest] = v
                continue
            new = next((rest.replace(a, b, 1) for a, b in _HF_BLOCK.items() if rest.startswith(a)), None)
            out[head + (new or rest)] = v  # an unknown name stays unknown: the key check lists it
        else:
            out[k] = v
    for head, parts in kv.items():
        for what in ("weight", "bias"):
            key, value = parts.get(f"attention.self.key.{what}"), parts.get(f"attention.self.value.{what}")
            if key is not None and value is not None:
                out[f"{head}attn.kv.{what}"] = torch.cat([key, value], 0)
    return out


def _hf_vit(state: dict, names: list[tuple[str, str]], qkv: tuple[str, str, str]) -> dict:
    """Hugging Face ViT names -> timm's: `names` renames by regular expression, the separate query, key and value
    projections (`qkv`: their three names) are joined into timm's `attn.qkv` (biases into EVA's `q_bias` and
    `v_bias` where the key has none, as DINOv3's)."""
    import re

    out, parts = {}, {}
    for key, v in state.items():
        if key.endswith("mask_token"):  # pretraining only
            continue
        if m := re.fullmatch(r"(?:encoder\.)?layer\.(\d+)\.attention\.(?:attention\.)?(\w+)\.(weight|bias)", key):
            if m[2] in qkv:
                parts.setdefault((m[1], m[3]), {})[qkv.index(m[2])] = v
                continue
        for pattern, repl in names:
            key = re.sub(pattern, repl, key)
        out[key] = v
    for (block, what), got in parts.items():
        prefix = f"blocks.{block}.attn."
        if what == "weight" or len(got) == 3:
            out[f"{prefix}qkv.{what}"] = torch.cat([got[i] for i in range(3)]) if len(got) == 3 else None
        else:  # no key bias: EVA's separate query and value biases
            out.update({f"{prefix}q_bias": got[0], f"{prefix}v_bias": got[2]} if 0 in got and 2 in got else
                       {f"{prefix}{qkv[i]}.bias": got[i] for i in got})
    return {k: v for k, v in out.items() if v is not None}


_HF_DINOV2 = [(r"^embeddings\.cls_token", "cls_token"), (r"^embeddings\.register_tokens", "reg_token"),
              (r"^embeddings\.position_embeddings", "pos_embed"),
              (r"^embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
              (r"^encoder\.layer\.(\d+)\.", r"blocks.\1."), (r"attention\.output\.dense\.", "attn.proj."),
              (r"layer_scale(\d)\.lambda1", r"ls\1.gamma"), (r"mlp\.weights_in\.", "mlp.fc1."),
              (r"mlp\.weights_out\.", "mlp.fc2."), (r"^layernorm\.", "norm.")]
_HF_DINOV3 = [(r"^embeddings\.cls_token", "cls_token"), (r"^embeddings\.register_tokens", "reg_token"),
              (r"^embeddings\.patch_embeddings\.", "patch_embed.proj."), (r"^layer\.(\d+)\.", r"blocks.\1."),
              (r"attention\.o_proj\.", "attn.proj."), (r"layer_scale(\d)\.lambda1", r"gamma_\1"),
              (r"mlp\.up_proj\.", "mlp.fc1."), (r"mlp\.down_proj\.", "mlp.fc2."), (r"^norm\.", "norm.")]


def from_hf_dinov2(state: dict) -> dict:
    """transformers' Dinov2Model / Dinov2WithRegistersModel names -> timm's VisionTransformer."""
    return _hf_vit(state, _HF_DINOV2, ("query", "key", "value"))


def from_hf_dinov3(state: dict) -> dict:
    """transformers' DINOv3ViTModel names -> timm's EVA (`vit_*_dinov3`, `*_qkvb` where the file has biases)."""
    return _hf_vit(state, _HF_DINOV3, ("q_proj", "k_proj", "v_proj"))


@dataclass(frozen=True)
class WeightFormat:
    """detect: does a state dict (unwrapped) have this format's keys; convert: its keys renamed to ours."""
    detect: Callable[[dict], bool]
    convert: Callable[[dict], dict] = dict


WEIGHT_FORMATS = Registry("weight format", "model.pretrained")
WEIGHT_FORMATS.register("mmcv-resnet-v1c")(WeightFormat(lambda s: any(k.startswith("stem.") for k in s)))
WEIGHT_FORMATS.register("timm-resnet-v1c")(WeightFormat(lambda s: "conv1.0.weight" in s, from_timm_resnet))
WEIGHT_FORMATS.register("torchvision-resnet")(WeightFormat(lambda s: "conv1.weight" in s))
WEIGHT_FORMATS.register("segformer-mit")(WeightFormat(lambda s: any(k.startswith("patch_embed1.") for k in s)))
WEIGHT_FORMATS.register("hf-segformer-mit")(WeightFormat(
    lambda s: any(k.startswith(("segformer.encoder.", "encoder.patch_embeddings.")) for k in s), from_hf_segformer))
WEIGHT_FORMATS.register("hf5-segformer-mit")(WeightFormat(
    lambda s: any(k.startswith(("segformer.stages.", "stages.0.patch_embeddings.")) for k in s), from_hf5_segformer))
WEIGHT_FORMATS.register("hf-dinov2")(WeightFormat(
    lambda s: "embeddings.patch_embeddings.projection.weight" in s, from_hf_dinov2))
WEIGHT_FORMATS.register("hf-dinov3")(WeightFormat(
    lambda s: "embeddings.patch_embeddings.weight" in s and "layer.0.norm1.weight" in s, from_hf_dinov3))
# timm's own ViT / EVA files and Meta's original DINOv2 / DINOv3 / EVA releases: the timm backbone's fit_weights
# (timm's converter for the architecture) renames the Meta keys
WEIGHT_FORMATS.register("timm-or-meta-vit")(WeightFormat(lambda s: "patch_embed.proj.weight" in s))
# a timm backbone's own state dict, as a run or a user saved it (`backbone.state_dict()`)
WEIGHT_FORMATS.register("vdatrain-timm-backbone")(WeightFormat(
    lambda s: any(k.startswith(("model.patch_embed.", "pyramid.")) for k in s)))


def detect_format(state: dict) -> str:
    """The first registered format whose keys `state` has, or "unknown" (then the key check lists them)."""
    return next((name for name, fmt in WEIGHT_FORMATS.items() if fmt.detect(state)), "unknown")


def _few(keys) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:6]) + (f" (+{len(keys) - 6} more)" if len(keys) > 6 else "")


def check_keys(state: dict, own: dict, what: str, may_lack: tuple = ()) -> None:
    """Raise a WeightsError starting with `what` that lists missing, unexpected and mis-shaped keys of
    `state` against the model's `own` state dict (BatchNorm counters and keys under `may_lack` may be absent),
    and refuses what is not weights: keys that are not names, values that are not tensors, integer or boolean
    tensors where the model holds floats (never cast silently), and NaN or infinite values."""
    odd = [repr(k) for k in state if not isinstance(k, str)][:3]
    if odd:
        raise WeightsError(f"{what}: keys that are not parameter names ({', '.join(odd)}): not a state dict")
    not_tensors = [f"{k} ({type(v).__name__})" for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise WeightsError(f"{what}: values that are not tensors: {_few(not_tensors)}")
    need = {k for k in own if not k.endswith("num_batches_tracked") and not (may_lack and k.startswith(may_lack))}
    missing, unexpected = need - set(state), set(state) - set(own)
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in need & set(state)
              if state[k].shape != own[k].shape]
    dtypes = [f"{k} {state[k].dtype} vs {own[k].dtype}" for k in need & set(state)
              if own[k].is_floating_point() and not state[k].is_floating_point()]
    if missing or unexpected or shapes or dtypes:
        parts = [f"{name} {len(keys)}: {_few(keys)}" for name, keys in
                 (("missing", missing), ("unexpected", unexpected), ("shape mismatches", shapes),
                  ("not floating point", dtypes)) if keys]
        raise WeightsError(f"{what}: " + "; ".join(parts))
    bad = [k for k in sorted(need & set(state)) if state[k].is_floating_point() and not torch.isfinite(state[k]).all()]
    if bad:
        raise WeightsError(f"{what}: NaN or infinite values in {_few(bad)} (a diverged run's weights?)")


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


def read_weights(path) -> dict:
    """A state dict from `.safetensors` (no pickle at all) or a PyTorch file (weights_only)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise WeightsError(f"{path}: not a readable safetensors file ({e})") from None
    return safe_load(path)


def load_backbone(backbone: torch.nn.Module, path) -> str:
    """Load `path` into `backbone` strictly (classifier weights excepted); returns the detected format."""
    path = Path(path)
    state = read_weights(path)
    try:
        state = _unwrap(state)
    except WeightsError as e:
        raise WeightsError(f"{path}: {e}") from None
    fmt = detect_format(state)
    state = WEIGHT_FORMATS[fmt].convert(state) if fmt in WEIGHT_FORMATS else state
    state = {k: v for k, v in state.items() if not k.startswith(CLASSIFIER_PREFIXES) and "num_batches_tracked" not in k}
    try:
        state = backbone.fit_weights(state)
    except WeightsError as e:
        raise WeightsError(f"{path} ({fmt} keys): {e}") from None
    own = backbone.state_dict()
    if fmt == "torchvision-resnet" and any(k.startswith("stem.") for k in own):
        raise WeightsError(f"{path}: a torchvision ResNet (7x7 stem) does not fit {type(backbone).__name__}'s deep "
                           f"(v1c) stem: use model.name deeplabv2_r101_tv for these weights, or bring ResNet-v1c "
                           f"weights (mmcv resnet101_v1c, timm resnet101c)")
    check_keys(state, own, f"{path} ({fmt} keys) does not fit {backbone.name or type(backbone).__name__}",
               may_lack=backbone.fresh_prefixes)
    backbone.load_state_dict(state, strict=False)  # num_batches_tracked counters are not weights
    return fmt
