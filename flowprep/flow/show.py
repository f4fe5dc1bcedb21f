"""`flowprep flow-show`: frame | flow (colour wheel) | validity, for a person to look at."""

from __future__ import annotations

import cv2
import numpy as np

from flowprep.errors import FlowprepError
from flowprep.store import StoreReader, pair_name
from flowprep.viz import flow_to_rgb


def flow_picture(store, sample_id: str, pair: str | None = None, zoom: int = 1) -> np.ndarray:
    """(h, 3w, 3) uint8 RGB: the flow's source frame, the flow (hue = direction, saturation = magnitude,
    invalid black), and validity (white = valid)."""
    r = StoreReader(store)
    if sample_id not in r.sample_ids:
        raise FlowprepError(f"{store}: no sample {sample_id!r} (e.g. {', '.join(r.sample_ids[:3])})")
    i = r.sample_ids.index(sample_id)
    if not r.flow_pairs:
        raise FlowprepError(f"{store}: no flow computed yet (run `flowprep flow {store}`)")
    if pair:
        from flowprep.flow.transfer import resolve_pair

        pair = pair_name(*resolve_pair(pair))
    pair = pair or sorted(r.flow_pairs)[0]
    if pair not in r.flow_pairs:
        raise FlowprepError(f"{store}: no flow pair {pair!r} (have {sorted(r.flow_pairs)})")
    if not r.complete(f"flow_{pair}")[i]:
        raise FlowprepError(f"{store}: flow {pair} of {sample_id!r} not computed yet")
    frame = r.frame(i, r.flow_pairs[pair]["from_offset"])
    valid = r.flow_valid(i, pair)
    panel = np.concatenate([frame, flow_to_rgb(r.flow(i, pair), valid), np.repeat(valid[..., None] * 255, 3, -1).astype(np.uint8)], 1)
    return cv2.resize(panel, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST) if zoom > 1 else panel
