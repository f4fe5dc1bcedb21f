"""The dataset store: one zarr v3 group per dataset split.

`layout` defines the format, `writer` creates and fills stores sample by sample,
`reader` maps chunk files zero-copy, `verify` recomputes checksums.
"""

from flowprep.store.layout import (FLOW_MAX_PX, FLOW_SCALE, SCHEMA_VERSION, decode_flow, encode_flow, flow_part, pair_name,
                                   pair_offsets)
from flowprep.store.reader import StoreReader
from flowprep.store.writer import StoreSpec, StoreWriter, add_flow, create_store

__all__ = [
    "FLOW_MAX_PX",
    "FLOW_SCALE",
    "SCHEMA_VERSION",
    "StoreReader",
    "StoreSpec",
    "StoreWriter",
    "add_flow",
    "create_store",
    "decode_flow",
    "encode_flow",
    "flow_part",
    "pair_name",
    "pair_offsets",
]
