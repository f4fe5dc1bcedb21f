"""`flowprep flow-show`: frame | flow (the standard colour wheel, with its key) | validity, for a person to look at."""

from __future__ import annotations

import numpy as np

from flowprep.errors import FlowprepError
from flowprep.store import StoreReader, flow_part, pair_name
from flowprep.figures import flow_figure


def flow_picture(store, sample_id: str, pair: str | None = None, zoom: float = 1.0):
    """A figure: the flow's source frame | the flow in the standard colour wheel (invalid black) with its key and
    the length its rim stands for | validity (white = valid)."""
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
    if not r.complete(flow_part(pair))[i]:
        raise FlowprepError(f"{store}: flow {pair} of {sample_id!r} not computed yet")
    frame = r.frame(i, r.flow_pairs[pair]["from_offset"])
    valid = np.asarray(r.flow_valid(i, pair))
    meta = r.flow_pairs[pair]
    return flow_figure(np.asarray(frame), r.flow(i, pair), valid,
                       f"{sample_id}: flow {pair}, frame {meta['from_offset']:+d} -> {meta['to_offset']:+d}", zoom)
