"""Store size per dataset and the decode cost of each codec, side by side.

    python bench/store_size.py [--stores paper-data/stores] [--repeat 5]

Reads the full-resolution stores `make paper-data` writes (the synthetic replicas at the real resolutions,
ingested with the default codecs, DIS flows). For each store:

- bytes per pixel of each kind of array, per sample: raw (what every array cost before codecs per array),
  the store as written (frames and flows raw, labels and validity zstd), and with flows in blosc-lz4 + byte
  shuffle (`--flow-codec blosc-lz4`; each flow chunk encoded here with the writer's codec);
- projected GB for the real datasets' sample counts under each choice;
- CPU milliseconds per sample to decode each codec (a compressed chunk is decoded whole, once per sample,
  then cropped; a raw one is a memory-mapped 1024x1024 window copied out), with the ratio to the raw read.

Goals: by default labels and masks cost next to nothing (VIPER <= 470 GB); with the flow codec
everything but the frames is <= 40% of the frames' bytes (VIPER <= 360 GB) at <= 3 ms extra CPU per sample.
Caveat: the replicas are rendered, not filmed; real labels and flows compress somewhat less.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numcodecs.blosc
import numpy as np
from numcodecs import Blosc, Zstd

numcodecs.blosc.use_threads = False  # one thread, as in a DataLoader worker
from flowprep.store import StoreReader
from flowprep.store import layout as L

# Samples of the real training sets (REFERENCE.md): what a store for each would hold.
REAL = {"viper_train": ("VIPER train", 13367), "synthia-seq_train": ("Synthia-Seq", 850),
        "cityscapes-seq_train": ("Cityscapes-Seq train", 2975), "bddvid_train": ("BDDVid train", 2999)}
BLOSC = Blosc(cname="lz4", clevel=5, shuffle=Blosc.BITSHUFFLE)  # the writer's blosc-lz4 (typesize from the data)
BYTE_SHUFFLE = Blosc(cname="lz4", clevel=5, shuffle=Blosc.SHUFFLE)  # the alternative, for the table


def kind(path: str) -> str | None:
    for k, prefix in (("frames", "frames"), ("labels", "labels"), ("flows", "flows/"), ("flow_valid", "flow_valid/")):
        if path == prefix or path.startswith(prefix) and prefix.endswith("/"):
            return k
    return None


def sizes(root: Path) -> tuple[dict, dict, dict, int]:
    """Per kind: raw, written and blosc-lz4-flow bytes per sample (over complete samples), and the pixels."""
    reader = StoreReader(root)
    raw, written, blosc = {}, {}, {}
    for part in L.store_parts(reader.attrs):
        done = np.flatnonzero(reader.complete(part))
        for path in L.part_arrays(part, reader.attrs):
            k = kind(path)
            if k is None or not len(done):
                continue
            meta = L.read_array_meta(root, path)
            keys = [key for i in done for key in meta.sample_chunk_keys(int(i))]
            raw[k] = raw.get(k, 0) + meta.chunk_nbytes * len(keys) / len(done)
            on_disk = sum(os.path.getsize(root / key) for key in keys) / len(done)
            written[k] = written.get(k, 0) + on_disk
            if k == "flows":
                encoded = [len(BLOSC.encode(np.ascontiguousarray(reader.flow_fixed(int(i), path.split("/", 1)[1]))))
                           for i in done]
                blosc[k] = blosc.get(k, 0) + sum(encoded) / len(done)
            else:
                blosc[k] = blosc.get(k, 0) + on_disk
    h, w = reader.resolution
    return raw, written, blosc, h * w


def decode_costs(root: Path, repeat: int) -> list[tuple[str, float, float]]:
    """(array, ms per sample, compression ratio) of each codec on this store's first sample."""
    reader = StoreReader(root)
    h, w = reader.resolution
    window = (0, min(1024, h), 0, min(1024, w))
    frame = np.ascontiguousarray(reader.frame(0, 0))
    label = np.ascontiguousarray(reader.label(0, 0))
    pair = next(iter(reader.flow_pairs))
    flow = np.ascontiguousarray(reader.flow_fixed(0, pair))
    valid = np.ascontiguousarray(reader.flow_valid(0, pair))
    zstd = Zstd(level=3)
    cases = [
        ("frame, raw: memory-mapped 1024x1024 window copied", lambda: np.array(reader.frame(0, 0, window)), 1.0),
        ("flow, raw: memory-mapped 1024x1024 window copied", lambda: np.array(reader.flow_fixed(0, pair, window)),
         1.0),
    ]
    for name, data, codec in (("label, zstd", label, zstd), ("validity, zstd", valid, zstd),
                              ("flow, blosc-lz4 + bit shuffle (`--flow-codec blosc-lz4`)", flow, BLOSC),
                              ("flow, blosc-lz4 + byte shuffle (not used: for comparison)", flow, BYTE_SHUFFLE),
                              ("frame, zstd (not used: for comparison)", frame, zstd)):
        blob = codec.encode(data)
        cases.append((f"{name}: whole frame decoded", lambda b=blob, c=codec: c.decode(b), data.nbytes / len(blob)))
    out = []
    for name, fn, ratio in cases:
        fn()
        start = time.process_time()
        for _ in range(repeat):
            fn()
        out.append((name, 1000 * (time.process_time() - start) / repeat, ratio))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stores", type=Path, default=Path("paper-data/stores"))
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; stores in {a.stores}\n")
    print("| store | array | raw B/px | written B/px | + blosc-lz4 flows B/px |")
    print("|---|---|---:|---:|---:|")
    projected = []
    for name, (label, count) in REAL.items():
        root = a.stores / f"{name}.zarr"
        if not (root / "zarr.json").exists():
            print(f"| {name} | (no store: run `make paper-data`) | | | |")
            continue
        raw, written, blosc, px = sizes(root)
        for k in raw:
            print(f"| {name} | {k} | {raw[k] / px:.3f} | {written[k] / px:.4f} | {blosc[k] / px:.4f} |")
        projected.append((label, count, *(sum(d.values()) * count / 1e9 for d in (raw, written, blosc)),
                          sum(v for k, v in blosc.items() if k != "frames") / blosc["frames"]))
    print("\n| dataset | samples | GB raw (before) | GB written (default) | GB + blosc-lz4 flows | "
          "non-frame bytes / frame bytes, + blosc-lz4 |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, count, r, w, b, share in projected:
        print(f"| {label} | {count} | {r:.0f} | {w:.0f} | {b:.0f} | {100 * share:.0f}% |")
    if projected:
        print(f"| all | | {sum(p[2] for p in projected):.0f} | {sum(p[3] for p in projected):.0f} | "
              f"{sum(p[4] for p in projected):.0f} | |")
    root = a.stores / "viper_train.zarr"
    if (root / "zarr.json").exists():
        costs = decode_costs(root, a.repeat)
        base = costs[0][1]
        print(f"\nDecode cost per sample, {root.name} (one thread, CPU time):\n")
        print("| array, codec | CPU ms per sample | x raw frame window | compression |")
        print("|---|---:|---:|---:|")
        for name, ms, ratio in costs:
            print(f"| {name} | {ms:.2f} | {ms / base:.2f} | {ratio:.1f}x |")


if __name__ == "__main__":
    main()
