"""Describe a store for a person (`flowprep inspect`) or a script (`--json`)."""

from __future__ import annotations

import os
from pathlib import Path

from flowprep.store import layout as L
from flowprep.store.reader import StoreReader


def _disk_usage(path: Path) -> tuple[int, int]:
    """(bytes, files) under `path`."""
    total = files = 0
    for dirpath, _, names in os.walk(path):
        for name in names:
            total += os.path.getsize(os.path.join(dirpath, name))
            files += 1
    return total, files


def describe_store(path) -> dict:
    root = Path(path)
    attrs = L.read_store_attrs(root)
    n = len(attrs["sample_ids"])
    arrays = []
    for part in L.store_parts(attrs):
        for p in [*L.part_arrays(part, attrs), f"{L.CHECKSUMS}/{part}"]:
            meta = L.read_array_meta(root, p)
            nbytes, files = _disk_usage(root / p)
            arrays.append({
                "path": p, "shape": list(meta.shape), "dtype": str(meta.dtype.newbyteorder("=")),
                "chunks": list(meta.chunks), "codecs": list(meta.codecs), "zero_copy": meta.mappable,
                "bytes_on_disk": nbytes, "files": files,
            })
    reader = StoreReader(root)
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
        "samples": n,
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
        f"format       {d['schema']}{' (zstd-compressed: read through zarr-python)' if d['compressed'] else ' (uncompressed: zero-copy)'}",
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
    header = f"{'array':<28}{'shape':<28}{'dtype':<8}{'chunks':<26}{'codecs':<12}{'on disk':>10}"
    lines += ["", header, "-" * len(header)]
    for a in d["arrays"]:
        lines.append(f"{a['path']:<28}{str(tuple(a['shape'])):<28}{a['dtype']:<8}{str(tuple(a['chunks'])):<26}"
                     f"{'+'.join(a['codecs']):<12}{_size(a['bytes_on_disk']):>10}")
    total = sum(a["bytes_on_disk"] for a in d["arrays"])
    lines.append(f"{'total':<102}{_size(total):>10}")
    if d["provenance"]:
        lines += ["", "provenance"]
        for i, p in enumerate(d["provenance"], 1):
            lines.append(f"  {i}. {p.get('stage', '?')}: {p.get('tool', '')}  {p.get('command', '')}")
    return "\n".join(lines)
