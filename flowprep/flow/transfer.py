"""Flows in and out of a store as files: `flowprep flow-import` and `flowprep flow-export`.

A file name is a pattern relative to a folder, with placeholders filled per sample:
- {sample_id}: the store's sample (its labelled frame t);
- the fields of the dataset's sample id: {city}, {seq} (Cityscapes-Seq), {seq} (VIPER), ...;
- {t}: the labelled frame's number; {frame}: the number of the frame the pair STARTS from (t for
  bwd_1, t-1 for bwd_1_at_m1), so a flow filed under its source frame is found; {offset}: that frame's
  offset from t. BDDVid's frame numbers are the matched video frame's.
Format specs apply: the reference's published Cityscapes-Seq flows are
`{city}/{city}_{seq:06d}_{frame:06d}_leftImg8bit.png` under `.../frame_dist_1/backward/{split}`.
"""

from __future__ import annotations

import string
from functools import lru_cache
from pathlib import Path

import numpy as np

from flowprep.errors import FlowprepError
from flowprep.flow.formats import FORMATS, format_of, read_flow, resize_flow, write_flow
from flowprep.ingest.pattern import Pattern
from flowprep.manifest import DATASETS, load_manifest
from flowprep.progress import Progress
from flowprep.store import StoreReader, StoreWriter, add_flow, flow_part, pair_name, pair_offsets


def resolve_pair(spec: str) -> tuple[int, int]:
    """One pair, spelt either way: "bwd:1" / "bwd:1@-1" (as --pairs) or "bwd_1" / "bwd_1_at_m1" (stored)."""
    from flowprep.flow.job import parse_pairs

    try:
        return pair_offsets(spec.strip())
    except FlowprepError:
        pairs = parse_pairs(spec)
        if len(pairs) != 1:
            raise FlowprepError(f"--pair {spec!r}: one pair at a time") from None
        return pairs[0]


@lru_cache(maxsize=None)
def _id_pattern(dataset: str) -> Pattern | None:
    """The dataset's sample-id pattern (compiled once), None for a dataset without a manifest (BDDVid)."""
    return Pattern(load_manifest(dataset).sample_id) if dataset in DATASETS else None


def sample_fields(reader: StoreReader, index: int, src_offset: int) -> dict:
    """The placeholders of sample `index` for a pair starting at `src_offset` (see the module's docstring)."""
    sid = reader.sample_ids[index]
    fields: dict = {"sample_id": sid, "offset": src_offset}
    pattern = _id_pattern(reader.attrs["dataset"])
    if pattern is not None:
        fields.update(pattern.match(sid) or {})
    if "match" in reader.attrs.get("extras", {}) and reader.complete()[index]:
        fields["frame"] = int(np.asarray(reader.extra(index, "match"))[0])  # BDDVid: the matched video frame
    if "frame" in fields:
        fields["t"] = fields["frame"]
        fields["frame"] = fields["t"] + src_offset
    return fields


def check_pattern(pattern: str, fields: dict) -> None:
    """A one-line error naming the first placeholder the store cannot fill."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(pattern) if name is not None]
    except ValueError as e:
        raise FlowprepError(f"--pattern {pattern!r}: {e}") from None
    for name in names:
        if name not in fields:
            raise FlowprepError(f"--pattern {pattern!r}: unknown placeholder {{{name}}} (this store offers "
                                f"{', '.join('{' + k + '}' for k in fields)})")
    try:
        pattern.format(**fields)
    except (ValueError, TypeError) as e:
        raise FlowprepError(f"--pattern {pattern!r}: {e}") from None


def valid_file(path: Path) -> Path:
    """The validity picture `flow-export` writes beside a flow file of a format without a mask."""
    return path.with_name(f"{path.name[:-len(path.suffix)] if path.suffix else path.name}_valid.png")


def read_valid_picture(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool from a `_valid.png` (white = valid); one line naming the file when it is not one."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None or img.ndim != 2 or img.shape != shape:
        raise FlowprepError(f"{path}: not a validity picture of the flow's {shape[1]}x{shape[0]} (a grey PNG)")
    return img > 127


def import_flows(store, pair: str, directory, pattern: str, fmt: str | None = None, rescale: bool = False,
                 provenance: dict | None = None, progress: bool = True) -> tuple[str, int, list[str]]:
    """Read one file per sample into the store's pair; returns (pair name, imported, ids without a file).

    Validity: a KITTI PNG carries its own; for the formats without a mask, the `<name>_valid.png` beside each
    file (`flow-export` writes it) is read and combined with the vectors' own (finite, in range). When a file has
    none, every finite vector counts as valid and the pair's provenance says so ("validity": "unknown ...")."""
    src, dst = resolve_pair(pair)
    reader = StoreReader(store)
    check_pattern(pattern, sample_fields(reader, 0, src))
    fmt = format_of(pattern, fmt)
    has_mask = FORMATS[fmt][3]
    paths = [Path(directory) / pattern.format(**sample_fields(reader, i, src)) for i in range(len(reader))]
    files = [p for p in paths if p.is_file()]
    unmasked = [p for p in files if not has_mask and not valid_file(p).is_file()]
    provenance = {**(provenance or {}), "validity": "the format's own" if has_mask else (
        "from the _valid.png files" if not unmasked else
        f"unknown for {len(unmasked)} of {len(files)} files (no _valid.png: every finite vector taken as valid)")}
    name = add_flow(store, src, dst, provenance=provenance)
    reader, writer = StoreReader(store), StoreWriter(store)
    h, w = reader.resolution
    missing = []
    for i, sid in Progress(len(reader), "flow-import", "flow", enabled=progress).each(enumerate(reader.sample_ids)):
        path = paths[i]
        if not path.is_file():
            missing.append(sid)
            continue
        flow, valid = read_flow(path, fmt)
        if not has_mask and valid_file(path).is_file():
            valid &= read_valid_picture(valid_file(path), valid.shape)
        if flow.shape[:2] != (h, w):
            if not rescale:
                raise FlowprepError(f"{path}: {flow.shape[1]}x{flow.shape[0]}, the store is {w}x{h} (use --rescale)")
            flow, valid = resize_flow(flow, valid, h, w)
        writer.write_flow(i, name, flow, valid)
    return name, len(reader) - len(missing), missing


def export_flows(store, pair: str, out, fmt: str = "kitti", pattern: str = "{sample_id}",
                 progress: bool = True) -> tuple[int, int]:
    """Write the pair's complete flows as files `pattern` + the format's extension under `out` (formats without
    a mask get `<name>_valid.png` beside); returns (written, samples without this flow)."""
    from flowprep.viz import write_picture

    src, dst = resolve_pair(pair)
    name = pair_name(src, dst)
    reader = StoreReader(store)
    if name not in reader.flow_pairs:
        raise FlowprepError(f"{store}: no flow pair {name!r} (have {sorted(reader.flow_pairs)})")
    if fmt not in FORMATS:
        raise FlowprepError(f"--format {fmt!r}: choose from {', '.join(FORMATS)}")
    check_pattern(pattern, sample_fields(reader, 0, src))
    ext, _, _, has_mask = FORMATS[fmt]
    done = np.flatnonzero(reader.complete(flow_part(name)))
    root = Path(out).resolve()
    for i in Progress(len(done), "flow-export", "flow", enabled=progress).each(done):
        base = root / pattern.format(**sample_fields(reader, int(i), src))
        if root not in base.resolve().parents:  # a pattern is the user's; a field from the store never escapes
            raise FlowprepError(f"--pattern {pattern!r}: {base} lies outside {root}")
        base.parent.mkdir(parents=True, exist_ok=True)
        flow, valid = reader.flow(i, name), np.asarray(reader.flow_valid(i, name))
        write_flow(f"{base}{ext}", flow, valid, fmt)
        if not has_mask:
            write_picture(f"{base}_valid.png", valid.astype(np.uint8) * 255)
    return len(done), len(reader) - len(done)


def compare_flows(store, pair: str, directory, pattern: str, fmt: str | None = None,
                  progress: bool = True) -> dict:
    """End-point error of the store's pair against reference flow files (e.g. VIPER's ground truth), over the
    pixels valid in both: {"samples", "pixels", "epe" (mean px), "outliers" (% with error > 3 px and > 5% of
    the reference's magnitude, KITTI's Fl), "missing": ids without a file}."""
    src, dst = resolve_pair(pair)
    name = pair_name(src, dst)
    reader = StoreReader(store)
    if name not in reader.flow_pairs:
        raise FlowprepError(f"{store}: no flow pair {name!r} (have {sorted(reader.flow_pairs)})")
    check_pattern(pattern, sample_fields(reader, 0, src))
    fmt = format_of(pattern, fmt)
    total, pixels, outliers, samples, missing = 0.0, 0, 0, 0, []
    done = np.flatnonzero(reader.complete(flow_part(name)))
    for i in Progress(len(done), "flow-compare", "flow", enabled=progress).each(done):
        path = Path(directory) / pattern.format(**sample_fields(reader, int(i), src))
        if not path.is_file():
            missing.append(reader.sample_ids[i])
            continue
        ref, ref_valid = read_flow(path, fmt)
        if ref.shape[:2] != reader.resolution:
            raise FlowprepError(f"{path}: {ref.shape[1]}x{ref.shape[0]}, the store is "
                                f"{reader.resolution[1]}x{reader.resolution[0]}")
        both = ref_valid & np.asarray(reader.flow_valid(i, name))
        err = np.linalg.norm(reader.flow(i, name) - ref, axis=-1)[both]
        mag = np.linalg.norm(ref, axis=-1)[both]
        total, pixels, samples = total + float(err.sum()), pixels + err.size, samples + 1
        outliers += int(((err > 3) & (err > 0.05 * mag)).sum())
    return {"pair": name, "samples": samples, "pixels": pixels, "epe": total / max(pixels, 1),
            "outliers": 100 * outliers / max(pixels, 1), "missing": missing}
