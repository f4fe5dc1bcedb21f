"""Describe a store for a person (`flowprep inspect`) or a script (`--json`)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from flowprep.store import layout as L
from flowprep.store.reader import StoreReader


def _file_sizes(root: Path, path: str) -> dict[str, int]:
    """Bytes of every file under `root/path`, by its '/'-separated path relative to `root` (a chunk key)."""
    sizes = {}
    for dirpath, _, names in os.walk(root / path):
        for name in names:
            file = os.path.join(dirpath, name)
            sizes[os.path.relpath(file, root).replace(os.sep, "/")] = os.path.getsize(file)
    return sizes


def describe_store(path, project: int | None = None) -> dict:
    """The store's layout, completeness and bytes. Each array's bytes per sample are its bytes on disk over the
    samples whose part is complete (their chunk files only: no metadata); `project`: the store's size for
    that many samples at those rates."""
    root = Path(path)
    attrs = L.read_store_attrs(root)
    reader = StoreReader(root)
    n = len(attrs["sample_ids"])
    arrays = []
    for part in L.store_parts(attrs):
        for p in [*L.part_arrays(part, attrs), f"{L.CHECKSUMS}/{part}"]:
            meta = L.read_array_meta(root, p, attrs)
            sizes = _file_sizes(root, p)
            nbytes, files = sum(sizes.values()), len(sizes)
            done = np.flatnonzero(reader.complete(part))
            chunk_bytes = sum(sizes.get(k, 0) for i in done for k in meta.sample_chunk_keys(int(i)))
            arrays.append({
                "path": p, "shape": list(meta.shape), "dtype": str(meta.dtype.newbyteorder("=")),
                "chunks": list(meta.chunks), "codecs": list(meta.codecs), "zero_copy": meta.mappable,
                "bytes_on_disk": nbytes, "files": files, "bytes_per_sample": chunk_bytes / len(done) if len(done) else None,
                "raw_bytes_per_sample": math.prod(meta.shape[1:]) * meta.dtype.itemsize,
            })
    parts = {part: {"complete": (c := int(reader.complete(part).sum())), "incomplete": n - c}
             for part in L.store_parts(attrs)}
    return {
        "path": str(root),
        "schema": f"{attrs['schema']} v{attrs['schema_version']}",
        "dataset": attrs["dataset"],
        "split": attrs["split"],
        "resolution": attrs["resolution"],
        "classes": attrs["classes"],
        "frame_offsets": attrs["frame_offsets"],
        "label_offsets": attrs["label_offsets"],
        "compressed": attrs.get("compressed", False),
        "codecs": L.store_codecs(attrs),
        "samples": n,
        "projected": None if project is None else {
            "samples": project,
            "bytes": sum(a["bytes_per_sample"] or 0 for a in arrays) * project,
            "raw_bytes": sum(a["raw_bytes_per_sample"] for a in arrays) * project,
        },
        "parts": parts,
        "flows": attrs["flows"],
        "arrays": arrays,
        "provenance": attrs.get("provenance", []),
        "first_sample_ids": attrs["sample_ids"][:5],
    }


def _size(nbytes: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if nbytes < 1000 or unit == "TB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1000
    return ""


def format_description(d: dict) -> str:
    h, w = d["resolution"]
    lines = [
        f"store        {d['path']}",
        f"format       {d['schema']}; codecs: " + ", ".join(f"{k} {v}" for k, v in d["codecs"].items()),
        f"dataset      {d['dataset']} / {d['split']}",
        f"resolution   {h} x {w} (H x W, pixels)",
        f"classes      {len(d['classes'])}: {', '.join(d['classes'])}",
        f"frames       offsets {d['frame_offsets']} relative to the labelled frame t; labels at {d['label_offsets']}",
        f"samples      {d['samples']} (e.g. {', '.join(d['first_sample_ids'])})",
    ]
    width = max(11, *(len(p) + 2 for p in d["parts"]))  # names like flow_bwd_1_at_m1 must not run into the text
    for part, c in d["parts"].items():
        lines.append(f"  {part:<{width}}{c['complete']} complete, {c['incomplete']} incomplete")
    if d["flows"]:
        lines.append("flows")
        for name, f in d["flows"].items():
            lines.append(f"  {name:<{width}}t{f['from_offset']:+d} -> t{f['to_offset']:+d} ({f['direction']}, k={f['distance']}, "
                         f"stored at t{f['stored_at']:+d}, {f['units']}, int16 x {f['encoding']['scale']})")
    header = (f"{'array':<28}{'shape':<28}{'dtype':<8}{'chunks':<26}{'codecs':<13}{'on disk':>10}"
              f"{'per sample':>12}{'ratio':>7}")
    lines += ["", header, "-" * len(header)]
    for a in d["arrays"]:
        per = a["bytes_per_sample"]
        ratio = f"{a['raw_bytes_per_sample'] / per:.1f}x" if per else "-"
        lines.append(f"{a['path']:<28}{str(tuple(a['shape'])):<28}{a['dtype']:<8}{str(tuple(a['chunks'])):<26}"
                     f"{'+'.join(a['codecs']):<13}{_size(a['bytes_on_disk']):>10}"
                     f"{_size(per) if per is not None else '-':>12}{ratio:>7}")
    total = sum(a["bytes_on_disk"] for a in d["arrays"])
    per_sample = sum(a["bytes_per_sample"] or 0 for a in d["arrays"])
    lines.append(f"{'total':<103}{_size(total):>10}{_size(per_sample):>12}")
    if d["projected"]:
        p = d["projected"]
        lines.append(f"projected    {p['samples']} samples: {_size(p['bytes'])} (uncompressed: {_size(p['raw_bytes'])})")
    if d["provenance"]:
        lines += ["", "provenance"]
        for i, p in enumerate(d["provenance"], 1):
            lines.append(f"  {i}. {p.get('stage', '?')}: {p.get('tool', '')}  {p.get('command', '')}")
    return "\n".join(lines)
