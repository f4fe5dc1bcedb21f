"""FlowFormer, FlowFormer++ and any other ptlflow model: construction, weights, input conventions, tiling.

Weights come only from a local file or a named ptlflow checkpoint already placed
in ``$TORCH_HOME/hub/checkpoints`` (never downloaded here); both are checked
before any work starts. ``random_weights`` builds an untrained model and exists
for tests.

ptlflow conventions (0.4.2): input ``{"images": x}`` with x float (N, 2, 3, h, w)
in 0..1, BGR; output ``["flows"]`` (N, 1, 2, h, w), flow from image 0 to image 1;
padding is internal. FlowFormer's own tiling runs tiles one by one, so it is
switched off and this engine tiles instead: tiles of every pair in a call go
through the model together, `batch` at a time (`flowprep flow --tile-batch`), and are
blended back on the engine's device; the flow job's validity is computed there too
(`flow_and_validity`), so only finished flows and masks cross to the CPU.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import numpy as np

from flowprep.errors import FlowprepError
from flowprep.flow.tiling import blend, tile_boxes
from flowprep.flow.validity import validity_on_device

ALIASES = {"flowformer++": "flowformerplusplus"}
DTYPES = {"fp32": None, "tf32": None, "fp16": "float16", "bf16": "bfloat16"}  # tf32: fp32 with TF32 matmuls


def hub_checkpoint_dir() -> Path:
    from torch import hub

    return Path(hub.get_dir()) / "checkpoints"


def resolve_checkpoint(model_ref, ckpt: str) -> Path:
    """A local file, or a checkpoint name whose file is already in the torch hub cache."""
    path = Path(ckpt).expanduser()
    if path.is_file():
        return path
    urls = getattr(model_ref, "pretrained_checkpoints", {}) or {}
    if ckpt in urls:
        cached = hub_checkpoint_dir() / os.path.basename(urls[ckpt])
        if cached.is_file():
            return cached
        raise FlowprepError(f"checkpoint {ckpt!r} of {model_ref.__name__} is not in the local cache: place "
                            f"{os.path.basename(urls[ckpt])} in {cached.parent} (nothing is downloaded at run time)")
    names = ", ".join(sorted(urls)) or "none"
    raise FlowprepError(f"{ckpt}: no such checkpoint file (and not a {model_ref.__name__} checkpoint name: {names})")


def load_weights(model, path: Path) -> dict:
    """Load a checkpoint into `model` strictly; a mismatch is an error listing the differing keys."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a file that is not a checkpoint
        raise FlowprepError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from None
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not state:
        raise FlowprepError(f"{path}: holds no state dict")
    if all(k.startswith("module.") for k in state):  # saved from DataParallel (official FlowFormer files)
        state = {k[len("module."):]: v for k, v in state.items()}
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    shapes = [k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or shapes:
        def few(keys):
            return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")
        raise FlowprepError(
            f"{path}: incompatible with {type(model).__name__}: "
            + "; ".join(f"{what} {len(keys)}: {few(keys)}" for what, keys in
                        (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", sorted(shapes)))
                        if keys))
    model.load_state_dict(state)
    return ckpt.get("hyper_parameters", {}) if isinstance(ckpt, dict) else {}


class PtlflowEngine:
    def __init__(self, model: str, *, ckpt: str | None = None, random_weights: bool = False, device: str = "cpu",
                 precision: str = "fp32", tile: tuple[int, int] | None = None, overlap: int = 64, batch: int = 4):
        import torch

        if precision not in DTYPES:
            raise FlowprepError(f"precision {precision!r}: choose fp32, tf32, fp16 or bf16")
        if tile is not None and (min(tile) < 16 or overlap >= min(tile)):
            raise FlowprepError(f"--tile {tile[0]}x{tile[1]} with --overlap {overlap}: tiles need at least 16 px "
                                f"and more than the overlap")
        if precision == "fp16" and not device.startswith("cuda"):
            raise FlowprepError("fp16 needs a GPU; use bf16 or fp32 on the CPU")
        with contextlib.redirect_stdout(io.StringIO()):  # ptlflow prints notes about optional CUDA kernels
            import ptlflow  # slow (several seconds): only when a ptlflow engine is asked for

        name = ALIASES.get(model, model)
        if name not in ptlflow.get_model_names():  # before asking for weights: a typo is not a missing checkpoint
            raise FlowprepError(f"unknown flow model {model!r} (ptlflow models: flowformer, flowformer++, raft, ...; "
                                f"CPU: dis, dis-fast)")
        if ckpt is None and not random_weights:
            raise FlowprepError(f"{model} needs weights: --ckpt FILE or a checkpoint name in the torch hub cache "
                                f"(--random-weights builds an untrained model, for tests)")
        ref = ptlflow.get_model_reference(name)
        path = resolve_checkpoint(ref, ckpt) if ckpt else None
        self.model = ptlflow.get_model(name)
        self.weights = str(path) if path else "random"
        if path:
            load_weights(self.model, path)
        for attr, value in (("use_tile_input", False), ("train_size", None)):
            if hasattr(self.model, attr):
                setattr(self.model, attr, value)
        self.model.eval().to(device)
        self.name, self.device, self.precision = model, device, precision
        # TF32 is a process-wide setting of torch's: fp32 keeps full precision, tf32 lets Ampere+ GPUs use it
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == "tf32"
        self.tile, self.overlap, self.batch = tile, overlap, batch
        self._torch = torch

    def __call__(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) uint8 RGB pairs -> (B, H, W, 2) float32 flow first -> second, pixels."""
        return self.on_device(first, second).cpu().numpy()

    def flow_and_validity(self, first: np.ndarray, second: np.ndarray, consistency: bool = True,
                          ego_row: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(B, H, W, 3) pairs -> flows first -> second (B, H, W, 2) and their validity (B, H, W): in frame, off
        the ego vehicle, and (with `consistency`) forward-backward consistent, both directions in one call."""
        b = len(first)
        if consistency:
            both = self.on_device(np.concatenate([first, second]), np.concatenate([second, first]))
            forward, backward = both[:b], both[b:]
        else:
            forward, backward = self.on_device(first, second), None
        return forward.cpu().numpy(), validity_on_device(forward, backward, ego_row).cpu().numpy()

    def on_device(self, first: np.ndarray, second: np.ndarray):
        """`__call__`, leaving the flows on the engine's device: (B, H, W, 2) float32 torch tensor."""
        torch = self._torch
        b, h, w, _ = first.shape
        boxes = tile_boxes(h, w, self.tile, self.overlap) if self.tile else [(0, h, 0, w)]
        # (B, 2, H, W, 3) RGB uint8 -> BGR float 0..1, tiles of all pairs in one list
        pairs = np.stack([first, second], 1)[..., ::-1]
        crops = [(i, box) for i in range(b) for box in boxes]
        flows: list[np.ndarray] = []
        dtype = DTYPES[self.precision]
        autocast_dtype = getattr(torch, dtype) if dtype else torch.float32
        with torch.inference_mode():
            for start in range(0, len(crops), self.batch):
                chunk = crops[start:start + self.batch]
                shapes = {(y1 - y0, x1 - x0) for _, (y0, y1, x0, x1) in chunk}
                groups = [[c for c in chunk if (c[1][1] - c[1][0], c[1][3] - c[1][2]) == s] for s in shapes]
                for group in groups:  # tiles of equal size go through the model together
                    x = np.stack([pairs[i, :, y0:y1, x0:x1] for i, (y0, y1, x0, x1) in group])
                    x = torch.from_numpy(np.ascontiguousarray(x)).to(self.device).permute(0, 1, 4, 2, 3).float() / 255
                    with torch.autocast(device_type=self.device.split(":")[0], dtype=autocast_dtype,
                                        enabled=dtype is not None):
                        out = self.model({"images": x})["flows"][:, 0]
                    for (i, box), f in zip(group, out.float().permute(0, 2, 3, 1)):
                        flows.append((i, box, f))
        if len(boxes) == 1:
            return torch.stack([f for _, _, f in flows])
        return torch.stack([blend([f for j, _, f in flows if j == i], boxes, h, w, ramp=self.overlap)
                            for i in range(b)])
