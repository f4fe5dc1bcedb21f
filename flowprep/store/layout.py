"""The store format, schema version 1: array names, chunking, flow encoding, metadata parsing.

A store is a zarr v3 group (a directory, e.g. ``viper_train.zarr``)::

    zarr.json                       group; our attributes live under the key "vda"
    frames/          (N, F, H, W, 3) uint8   RGB, one chunk per sample and frame offset
    labels/          (N, L, H, W)    uint8   Cityscapes trainIds, 255 = ignore
    class_counts/    (N, C)          int64   pixels of each class in the label of t (native resolution)
    extras/<name>/   (N, ...)        any     optional per-sample data of the base part (e.g. BDDVid's
                                             original BDD10k image for evaluation, and its match record)
    flows/<pair>/    (N, H, W, 2)    int16   fixed point, 1/32 px; (u, v) = (x, y)
    flow_valid/<pair>/ (N, H, W)     bool    where the stored flow may be trusted
    _checksums/<part>/ (N, K, 2)     uint64  (nbytes, crc32c) of the K chunk files a sample owns

Every array is chunked one sample at a time along axis 0 and whole along the
spatial axes, so a sample's data lives in files that no other sample touches:
disjoint samples can be written by different processes, and an uncompressed
chunk file is exactly the C-order bytes of one frame, which `np.memmap` maps.

A *part* is the unit of completion: ``base`` (frames, labels, class counts,
written at ingest) and one ``flow_<pair>`` part per flow pair (written by the
flow stage). A sample's part is complete when its checksum chunk exists; that
chunk is written last, so it is the completion record.

This module reads ``zarr.json`` files with the json module, not zarr-python,
so that inspecting a store and opening a reader stay fast.
"""

from __future__ import annotations

import itertools
import json
import os
import stat
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flowprep.errors import StoreError

SCHEMA = "vda-store"
SCHEMA_VERSION = 1
ATTRS_KEY = "vda"

FRAMES = "frames"
LABELS = "labels"
CLASS_COUNTS = "class_counts"
BASE_PART = "base"
CHECKSUMS = "_checksums"
IGNORE_LABEL = 255


def check_name(name, what: str) -> str:
    """`name` when it can stand as ONE file name inside a folder (sample ids, read from stores and split files,
    become file names: exports, pictures, raw paths): a non-empty string without a path separator, a NUL or a
    drive colon, and not "." or ".."; else StoreError naming `what` (the store or file it came from)."""
    if (not isinstance(name, str) or not name or name in (".", "..") or len(name) > 255
            or any(c in name for c in "/\\\0:")):
        raise StoreError(f"{what}: {name!r} is not a usable sample id (one file name: no '/', '\\', ':', NUL, "
                         f"'.' or '..')")
    return name


# Fixed-point flow: int16 at 1/32 px gives a quantisation error of at most 1/64 px
# and a range of [-1024, +1023.97] px. Values beyond saturate and are marked invalid.
FLOW_SCALE = 32
FLOW_DTYPE = np.dtype("<i2")
FLOW_MAX_PX = np.iinfo(np.int16).max / FLOW_SCALE

# Codecs that zarr-python decodes; arrays using them are read through zarr-python.
# Only a lone `bytes` codec (little-endian) is mapped zero-copy.
KNOWN_CODECS = {"bytes", "zstd", "gzip", "blosc", "crc32c", "transpose", "sharding_indexed"}


# Codecs per kind of array, chosen at ingest (the flow pairs' arrays at `add_flow`) and recorded in the
# store's attributes ("codecs"). Frames stay raw: they barely compress losslessly and training maps them.
# Labels and validity masks compress 45-280x for well under a millisecond per crop; flows halve with
# blosc-lz4 + bit shuffle (2.35x) for 3 ms per megapixel decoded, an option for users short of disk.
CODEC_NAMES = ("raw", "zstd", "blosc-lz4")
FLOW_CODECS = ("raw", "blosc-lz4")  # what a user picks for flows (`--flow-codec`, `flowprep flow --codec`)
DEFAULT_CODECS = {"frames": "raw", "labels": "zstd", "flows": "raw", "flow_valid": "zstd"}
ARCHIVAL_CODECS = dict.fromkeys(DEFAULT_CODECS, "zstd")  # `compress`: everything zstd (older stores' meaning)


def check_codec(name: str) -> str:
    """`name` when it is one of `CODEC_NAMES`, else StoreError naming it."""
    if name not in CODEC_NAMES:
        raise StoreError(f"codec {name!r} is unknown (known: {', '.join(CODEC_NAMES)})")
    return name


def store_codecs(attrs: dict) -> dict[str, str]:
    """The codec of each kind of array of a store (older stores record only "compressed")."""
    return {**(ARCHIVAL_CODECS if attrs.get("compressed") else dict.fromkeys(DEFAULT_CODECS, "raw")),
            **attrs.get("codecs", {})}


def flow_path(pair: str) -> str:
    return f"flows/{pair}"


def valid_path(pair: str) -> str:
    return f"flow_valid/{pair}"


def flow_part(pair: str) -> str:
    return f"flow_{pair}"


def extra_path(name: str) -> str:
    return f"extras/{name}"


def part_arrays(part: str, attrs: dict) -> list[str]:
    """Array paths whose chunks a part owns, in checksum order."""
    if part == BASE_PART:
        return [FRAMES, LABELS, CLASS_COUNTS] + [extra_path(n) for n in sorted(attrs.get("extras", {}))]
    if part.startswith("flow_"):
        pair = part[len("flow_"):]
        return [flow_path(pair), valid_path(pair)]
    raise StoreError(f"unknown store part {part!r}")


def pair_name(src_offset: int, dst_offset: int) -> str:
    """Name of the flow from frame offset `src_offset` to `dst_offset`, stored at `src_offset`.

    ``pair_name(0, -1) == "bwd_1"`` (t -> t-1), ``pair_name(0, 2) == "fwd_2"``,
    ``pair_name(-1, -2) == "bwd_1_at_m1"`` (ACCEL's t-1 -> t-2, stored at t-1).
    """
    k = dst_offset - src_offset
    if k == 0:
        raise StoreError(f"a flow pair needs two different frames, got {src_offset} -> {dst_offset}")
    name = f"{'bwd' if k < 0 else 'fwd'}_{abs(k)}"
    if src_offset != 0:
        name += f"_at_{'m' if src_offset < 0 else 'p'}{abs(src_offset)}"
    return name


def pair_offsets(name: str) -> tuple[int, int]:
    """The (source, destination) frame offsets of a flow pair name: the inverse of `pair_name`.

    ``pair_offsets("bwd_1") == (0, -1)``, ``pair_offsets("bwd_1_at_m1") == (-1, -2)``.
    """
    m = re.fullmatch(r"(bwd|fwd)_([1-9][0-9]*)(?:_at_([mp])([1-9][0-9]*))?", name)
    if m is None:
        raise StoreError(f"{name!r} is not a flow pair name (e.g. bwd_1, fwd_3, bwd_1_at_m1)")
    k = int(m[2]) * (-1 if m[1] == "bwd" else 1)
    src = 0 if m[3] is None else int(m[4]) * (-1 if m[3] == "m" else 1)
    return src, src + k


def encode_flow(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Quantise flow in pixels (..., 2) float to int16 at 1/32 px.

    Returns (encoded int16 array, representable mask): NaN/inf and vectors beyond
    +-1023.97 px are not representable; they are stored saturated (NaN as 0) and
    the caller must mark them invalid.
    """
    flow = np.asarray(flow, dtype=np.float32)
    finite = np.isfinite(flow).all(axis=-1)
    scaled = np.rint(np.nan_to_num(flow, nan=0.0, posinf=0.0, neginf=0.0) * FLOW_SCALE)
    in_range = (np.abs(scaled) <= np.iinfo(np.int16).max).all(axis=-1)
    encoded = np.clip(scaled, np.iinfo(np.int16).min, np.iinfo(np.int16).max).astype(FLOW_DTYPE)
    return encoded, finite & in_range


def decode_flow(encoded: np.ndarray) -> np.ndarray:
    """int16 fixed point (..., 2) -> float32 pixels."""
    return encoded.astype(np.float32) * np.float32(1.0 / FLOW_SCALE)


@dataclass(frozen=True)
class ArrayMeta:
    """What a reader needs of one array's zarr.json."""

    path: str  # relative to the store root, '/'-separated
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: np.dtype
    codecs: tuple[str, ...]
    fill_value: object
    separator: str

    @property
    def mappable(self) -> bool:
        """True when chunk files hold raw little-endian C-order bytes (zero-copy readable)."""
        return self.codecs == ("bytes",) and self.dtype.byteorder in ("<", "|", "=")

    @property
    def decodable(self) -> bool:
        """True when a chunk file is one compressed frame of those raw bytes (zstd or blosc), which the reader
        decodes itself (one chunk at a time, cached) instead of going through zarr-python."""
        return (len(self.codecs) == 2 and self.codecs[0] == "bytes" and self.codecs[1] in ("zstd", "blosc")
                and self.dtype.byteorder in ("<", "|", "="))

    @property
    def chunk_nbytes(self) -> int:
        return math.prod(self.chunks) * self.dtype.itemsize

    def chunk_key(self, coords: tuple[int, ...]) -> str:
        return f"{self.path}/c{self.separator}" + self.separator.join(str(c) for c in coords)

    def sample_chunk_keys(self, index: int) -> list[str]:
        """The chunk files of sample `index` (chunks are one sample thick along axis 0)."""
        grid = [range(math.ceil(s / c)) for s, c in zip(self.shape[1:], self.chunks[1:])]
        return [self.chunk_key((index, *rest)) for rest in itertools.product(*grid)]


_DTYPES = {
    "bool": "|b1", "uint8": "|u1", "int8": "|i1", "uint16": "u2", "int16": "i2",
    "uint32": "u4", "int32": "i4", "uint64": "u8", "int64": "i8", "float16": "f2",
    "float32": "f4", "float64": "f8",
}


MAX_JSON_BYTES = 16 << 20  # a store's zarr.json holds attributes, never data
MAX_CHUNK_BYTES = 1 << 31  # one sample's frames at 8K: far below


def contained(root: Path, rel: str) -> Path:
    """`root / rel` resolved, which must lie inside the store: a store's files never lead out of it (a symlinked
    folder or chunk pointing elsewhere is refused, for reading and writing)."""
    base = Path(root).resolve()
    path = (Path(root) / rel).resolve()
    if path != base and base not in path.parents:
        raise StoreError(f"{Path(root) / rel}: leads outside the store (to {path}); a store's files stay inside it")
    return path


def regular_file(root: Path, rel: str) -> Path:
    """`contained`, and a regular file (not a FIFO, a device or a folder); FileNotFoundError when missing."""
    path = contained(root, rel)
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise StoreError(f"{Path(root) / rel}: not a regular file")
    return path


def read_json(path: Path, root: Path | None = None) -> dict:
    """A metadata file of the store at `root` (bounded in size, a regular file inside the store)."""
    path = Path(path)
    try:
        real = regular_file(root, str(path.relative_to(root))) if root is not None else path
        size = os.stat(real).st_size
        if size > MAX_JSON_BYTES:
            raise StoreError(f"{path}: {size} bytes of metadata (at most {MAX_JSON_BYTES}): not a store's zarr.json")
        with open(real, "rb") as f:
            return json.loads(f.read(MAX_JSON_BYTES + 1))
    except FileNotFoundError:
        raise StoreError(f"{path}: missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise StoreError(f"{path}: not valid JSON ({str(e)[:200]})") from None


def _ints(value, what: str, lo: int, empty: bool = False) -> tuple[int, ...]:
    if not isinstance(value, list) or (not value and not empty) or len(value) > 8 or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= lo for v in value):
        raise StoreError(f"{what}: expected a list of integers >= {lo}, got {str(value)[:80]}")
    return tuple(value)


def expected_shape(path: str, attrs: dict) -> tuple[int, ...] | None:
    """The shape the layout gives array `path` of a store with `attrs` (None: not an array of the layout)."""
    n, (h, w) = len(attrs["sample_ids"]), attrs["resolution"]
    shapes = {FRAMES: (n, len(attrs["frame_offsets"]), h, w, 3), LABELS: (n, len(attrs["label_offsets"]), h, w),
              CLASS_COUNTS: (n, len(attrs["classes"]))}
    for pair in attrs.get("flows", {}):
        shapes[flow_path(pair)], shapes[valid_path(pair)] = (n, h, w, 2), (n, h, w)
    for name, extra in attrs.get("extras", {}).items():
        shapes[extra_path(name)] = (n, *extra["shape"])
    return shapes.get(path)


def read_array_meta(root: Path, path: str, attrs: dict | None = None) -> ArrayMeta:
    """Parse and validate ``root/path/zarr.json``; unknown codecs or dtypes are errors. Shapes and chunks are checked
    before anything is allocated: integers, one sample per chunk, whole along the other axes, a bounded chunk size,
    and (with the store's `attrs`) the shape the layout gives the array."""
    meta_file = Path(root) / path / "zarr.json"
    meta = read_json(meta_file, Path(root))
    if meta.get("zarr_format") != 3 or meta.get("node_type") != "array":
        raise StoreError(f"{meta_file}: not a zarr v3 array")
    dtype_name = meta.get("data_type")
    if dtype_name not in _DTYPES:
        raise StoreError(f"{meta_file}: data type {dtype_name!r} is not supported")
    grid = meta.get("chunk_grid", {})
    if grid.get("name") != "regular":
        raise StoreError(f"{meta_file}: chunk grid {grid.get('name')!r} is not supported (need 'regular')")
    cke = meta.get("chunk_key_encoding", {})
    if cke.get("name") != "default":
        raise StoreError(f"{meta_file}: chunk key encoding {cke.get('name')!r} is not supported")
    codecs, endian = [], "little"
    for codec in meta.get("codecs", []):
        name = codec.get("name")
        if name not in KNOWN_CODECS:
            raise StoreError(f"{meta_file}: codec {name!r} is unknown to this reader (known: {sorted(KNOWN_CODECS)})")
        if name == "bytes":
            endian = codec.get("configuration", {}).get("endian", "little")
        codecs.append(name)
    dtype = np.dtype(_DTYPES[dtype_name])
    if dtype.itemsize > 1:
        dtype = dtype.newbyteorder("<" if endian == "little" else ">")
    shape = _ints(meta.get("shape"), f"{meta_file}: shape", 0)
    chunks = _ints((grid.get("configuration") or {}).get("chunk_shape"), f"{meta_file}: chunk_shape", 1)
    lead = 2 if path in (FRAMES, LABELS) else 1  # one sample (and one frame slot) per chunk, whole beyond
    want_chunks = (1,) * min(lead, len(shape)) + shape[lead:]
    if chunks != want_chunks:
        raise StoreError(f"{meta_file}: chunks {list(chunks)} of shape {list(shape)} are not this layout's "
                         f"{list(want_chunks)}")
    if math.prod(chunks) * dtype.itemsize > MAX_CHUNK_BYTES:
        raise StoreError(f"{meta_file}: a chunk of {list(chunks)} {dtype_name} is over {MAX_CHUNK_BYTES >> 30} GiB")
    want = expected_shape(path, attrs) if attrs is not None else None
    if want is not None and shape != want:
        raise StoreError(f"{meta_file}: shape {list(shape)} does not match the store's attributes {list(want)} "
                         f"(samples, offsets, resolution)")
    if attrs is not None and path.startswith(CHECKSUMS) and shape[0] != len(attrs["sample_ids"]):
        raise StoreError(f"{meta_file}: {shape[0]} checksum records for {len(attrs['sample_ids'])} samples")
    return ArrayMeta(
        path=path,
        shape=shape,
        chunks=chunks,
        dtype=dtype,
        codecs=tuple(codecs),
        fill_value=meta.get("fill_value"),
        separator=cke.get("configuration", {}).get("separator", "/"),
    )


def read_store_attrs(root: Path) -> dict:
    """Read and validate the group attributes of the store at `root`."""
    root = Path(root)
    if not root.is_dir():
        raise StoreError(f"{root}: no store here (not a directory)")
    meta_file = root / "zarr.json"
    meta = read_json(meta_file, root)
    if meta.get("zarr_format") != 3 or meta.get("node_type") != "group":
        raise StoreError(f"{meta_file}: not a zarr v3 group")
    attrs = meta.get("attributes", {}).get(ATTRS_KEY)
    if not isinstance(attrs, dict) or attrs.get("schema") != SCHEMA:
        raise StoreError(f"{meta_file}: not a {SCHEMA} store (no '{ATTRS_KEY}' attributes)")
    version = attrs.get("schema_version")
    if version != SCHEMA_VERSION:
        raise StoreError(
            f"{meta_file}: store schema version {version!r} is not supported by this flowprep "
            f"(supports {SCHEMA_VERSION}); rebuild the store or use a matching flowprep version"
        )
    ids = attrs.get("sample_ids")
    if not isinstance(ids, list):
        raise StoreError(f"{meta_file}: sample_ids is not a list")
    for sid in ids:  # every opener (reader, writer, verify, inspect) gets ids that are safe as file names
        check_name(sid, str(meta_file))
    res = attrs.get("resolution")
    if not (isinstance(res, list) and len(res) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                                            and 0 < v <= 65536 for v in res)):
        raise StoreError(f"{meta_file}: resolution {str(res)[:80]} is not [height, width] in pixels")
    _ints(attrs.get("frame_offsets"), f"{meta_file}: frame_offsets", -10**6)
    _ints(attrs.get("label_offsets"), f"{meta_file}: label_offsets", -10**6, empty=True)
    if not isinstance(attrs.get("classes"), list) or not 0 < len(attrs["classes"]) <= 255:
        raise StoreError(f"{meta_file}: classes is not a list of 1..255 names")
    flows = attrs.get("flows", {})
    if not isinstance(flows, dict):
        raise StoreError(f"{meta_file}: flows is not a mapping of pair names")
    for name in flows:  # pair names become folders: one that climbs out ("../x") is refused as sample ids are
        try:
            pair_offsets(name)
        except StoreError:
            raise StoreError(f"{meta_file}: flow pair {str(name)[:80]!r} is not a pair name (bwd_1, fwd_2, "
                             f"bwd_1_at_m1, ...)") from None
    for name, extra in (attrs.get("extras", {}) or {}).items():
        check_name(name, f"{meta_file}: extras")
        _ints(list((extra or {}).get("shape", [])), f"{meta_file}: extras.{name}.shape", 1, empty=True)
    return attrs


def store_parts(attrs: dict) -> list[str]:
    return [BASE_PART] + [flow_part(p) for p in attrs.get("flows", {})]
