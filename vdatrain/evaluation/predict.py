"""Predictions of store frames: sliding windows over a whole frame, dual-frame for two-frame models.

    Predictor(model, window, stride, device).logits(reader, i, offset) -> (1, C, H, W) logits

A two-frame model (`model.pair` names its flow pair) also reads the frame its pair names,
relative to the predicted one (bwd_1 at offset -1: frame -2 through flow bwd_1_at_m1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from flowprep.store import StoreReader, flow_part, pair_name, pair_offsets
from vdatrain.data.normalise import normalise
from vdatrain.models.contract import Partner


def image_tensor(rgb: np.ndarray, device) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (1, 3, H, W) normalised on `device`."""
    return normalise(rgb)[None].to(device)


def stored_pair(reader: StoreReader, i: int, pair: str, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The stored flow (1, 2, H, W) in pixels and its validity (1, H, W) of sample i."""
    flow = torch.from_numpy(np.array(reader.flow(i, pair))).permute(2, 0, 1)[None].to(device)
    valid = torch.from_numpy(np.array(reader.flow_valid(i, pair)))[None].to(device)
    return flow, valid


@dataclass
class Predictor:
    """How evaluation predicts a frame: the model's sliding `window` and `stride` on `device`, under bf16 autocast
    when `bf16` (a bf16 recipe is evaluated as it trains; logits are returned as float32)."""
    model: torch.nn.Module
    window: tuple[int, int]
    stride: tuple[int, int]
    device: torch.device
    bf16: bool = False
    window_batch: int = 1  # sliding windows per forward

    def logits(self, reader: StoreReader, i: int, offset: int, rgb: np.ndarray | None = None,
               single_frame: bool = False) -> torch.Tensor | None:
        """(1, C, H, W) float32 logits of the frame at `offset` of sample i (`rgb` replaces that frame's pixels);
        None when a two-frame model's partner frame or flow is not in the store for this sample.
        `single_frame`: a two-frame model predicts the frame on its own (no partner)."""
        if rgb is None:
            rgb = np.asarray(reader.frame(i, offset))
        partner = None
        if self.model.pair is not None and not single_frame:
            other = offset + pair_offsets(self.model.pair)[1]  # pairs start at frame t (the recipe checks it)
            name = pair_name(offset, other)
            if other not in reader.frame_offsets or name not in reader.flow_pairs or \
                    not reader.complete(flow_part(name))[i]:
                return None
            partner = Partner(image_tensor(np.asarray(reader.frame(i, other)), self.device),
                              *stored_pair(reader, i, name, self.device))
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.model.predict(image_tensor(rgb, self.device), self.window, self.stride, partner,
                                        batch=self.window_batch)
        return logits.float()
