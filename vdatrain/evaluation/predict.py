"""Predictions of store frames: sliding windows over a whole frame, dual-frame for two-frame models.

    frame_prediction(model, reader, i, offset, ...) -> (H, W) int64 classes

A two-frame model (`model.pair` names its flow pair) also reads the frame its pair names,
relative to the predicted one (bwd_1 at offset -1: frame -2 through flow bwd_1_at_m1).
"""

from __future__ import annotations

import numpy as np
import torch

from flowprep.store import StoreReader, flow_part, pair_name, pair_offsets
from vdatrain.data.samples import normalise
from vdatrain.models.contract import FramePair


def image_tensor(rgb: np.ndarray, device) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (1, 3, H, W) normalised on `device`."""
    return normalise(rgb)[None].to(device)


def stored_pair(reader: StoreReader, i: int, pair: str, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The stored flow (1, 2, H, W) in pixels and its validity (1, H, W) of sample i."""
    flow = torch.from_numpy(np.array(reader.flow(i, pair))).permute(2, 0, 1)[None].to(device)
    valid = torch.from_numpy(np.array(reader.flow_valid(i, pair)))[None].to(device)
    return flow, valid


def frame_prediction(model, reader: StoreReader, i: int, offset: int, window, stride, device,
                     rgb: np.ndarray | None = None) -> torch.Tensor | None:
    """(H, W) int64 prediction of the frame at `offset` of sample i (`rgb` replaces that frame's pixels); None
    when a two-frame model's partner frame or flow is not in the store for this sample."""
    if rgb is None:
        rgb = np.asarray(reader.frame(i, offset))
    pair = None
    if model.pair is not None:
        partner = offset + pair_offsets(model.pair)[1]  # pairs start at frame t (the recipe checks it)
        name = pair_name(offset, partner)
        if partner not in reader.frame_offsets or name not in reader.flow_pairs or \
                not reader.complete(flow_part(name))[i]:
            return None
        pair = FramePair(image_tensor(np.asarray(reader.frame(i, partner)), device),
                         *stored_pair(reader, i, name, device))
    return model.predict(image_tensor(rgb, device), window, stride, pair).argmax(1)[0].cpu()
