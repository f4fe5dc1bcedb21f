"""Create stores and write them sample by sample, atomically and resumably.

Concurrency model: creating a store or declaring a flow pair changes shared
metadata and happens under an exclusive `flock` on the store directory; each such
stage ends by consolidating the metadata (for xarray and other zarr readers), and
every writer opens groups WITHOUT the consolidated copy, so a store a user
consolidated is still read as it is. Writing
a sample touches only that sample's chunk files (chunks are one sample thick),
so any number of processes may write disjoint samples at once. zarr-python
writes every chunk file through a temporary file and a rename, and a sample's
checksum record is written last: a sample killed half-way is simply
incomplete, and writing it again replaces whatever it left.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import google_crc32c
import numpy as np

from flowprep import __version__
from flowprep.errors import StoreError
from flowprep.store import layout as L


@dataclass
class StoreSpec:
    """Everything fixed when a store is created.

    ``frame_offsets``: frames stored per sample, relative to the labelled frame t
    (e.g. ``[-2, -1, 0]``). ``label_offsets``: frames whose labels are stored
    (usually ``[0]``). ``height``/``width``: native resolution in pixels.
    """

    dataset: str
    split: str
    classes: list[str]
    height: int
    width: int
    sample_ids: list[str]
    frame_offsets: list[int] = field(default_factory=lambda: [0])
    label_offsets: list[int] = field(default_factory=lambda: [0])
    compress: bool = False  # archival: every array zstd, frames included (no longer memory-mappable)
    flow_codec: str | None = None  # the flows' codec (`layout.CODEC_NAMES`); None: the default (raw)
    # name -> {"dtype": str, "shape": per-sample shape, "dims": names, "fill": value, "doc": meaning}
    extras: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.sample_ids:
            raise StoreError("a store needs at least one sample")
        for sid in self.sample_ids:  # ids become file names downstream (exports, pictures)
            L.check_name(sid, f"{self.dataset} {self.split} store")
        if len(set(self.sample_ids)) != len(self.sample_ids):
            dup = next(s for s in self.sample_ids if self.sample_ids.count(s) > 1)
            raise StoreError(f"sample id {dup!r} appears more than once")
        if not set(self.label_offsets) <= set(self.frame_offsets):
            raise StoreError(f"label offsets {self.label_offsets} must be among frame offsets {self.frame_offsets}")
        if self.flow_codec is not None:
            L.check_codec(self.flow_codec)
        if len(self.classes) >= L.IGNORE_LABEL:
            raise StoreError(f"at most {L.IGNORE_LABEL - 1} classes fit a uint8 label with 255 = ignore")

    @property
    def codecs(self) -> dict[str, str]:
        """The codec of each kind of array (recorded in the store: `add_flow` follows it for flows)."""
        codecs = dict(L.ARCHIVAL_CODECS if self.compress else L.DEFAULT_CODECS)
        return codecs | ({"flows": self.flow_codec} if self.flow_codec else {})

    def layout_attrs(self) -> dict:
        """The attributes that must match when a store is opened again for writing."""
        return {
            "schema": L.SCHEMA,
            "schema_version": L.SCHEMA_VERSION,
            "dataset": self.dataset,
            "split": self.split,
            "classes": list(self.classes),
            "ignore_label": L.IGNORE_LABEL,
            "frame_offsets": [int(o) for o in self.frame_offsets],
            "label_offsets": [int(o) for o in self.label_offsets],
            "resolution": [int(self.height), int(self.width)],
            "sample_ids": list(self.sample_ids),
            "extras": {k: dict(v) for k, v in sorted(self.extras.items())},
        }


@contextmanager
def _store_lock(root: Path):
    """Exclusive lock on the store directory (stable inode; adds no file to the store)."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _compressors(codec: str, dtype) -> list | None:
    """zarr codecs for one of `layout.CODEC_NAMES`."""
    if L.check_codec(codec) == "raw":
        return None
    from zarr.codecs import BloscCodec, ZstdCodec

    if codec == "zstd":
        return [ZstdCodec(level=3)]
    # blosc-lz4: bit shuffle groups the (mostly constant) high bits of smooth int16 flows: 2.35x against byte
    # shuffle's 2.0x, for ~15% more decoding time (docs/benchmarks.md)
    return [BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle", typesize=np.dtype(dtype).itemsize)]


def _ensure_array(group, path: str, *, shape, dtype, fill_value, dims, codec="raw", attributes=None, per_frame=False):
    """Create `path` in `group`, or check that an existing one has the same shape and dtype.

    Chunks are one sample thick and whole along every other axis, except with
    `per_frame`, where axis 1 (the frame slot) is split too: one chunk per frame.
    """
    import zarr

    if "/" in path:
        parent, name = path.rsplit("/", 1)
        group = group.require_group(parent)
    else:
        name = path
    try:
        existing = group[name]
    except KeyError:
        existing = None
    if existing is not None:
        if not isinstance(existing, zarr.Array) or existing.shape != tuple(shape) or existing.dtype != np.dtype(dtype):
            raise StoreError(f"array {path!r} exists with another shape or dtype than this store needs")
        return
    group.create_array(
        name,
        shape=tuple(shape),
        chunks=(1, 1, *shape[2:]) if per_frame else (1, *shape[1:]),
        dtype=dtype,
        fill_value=fill_value,
        compressors=_compressors(codec, dtype),
        filters=None,
        dimension_names=dims,
        attributes=attributes or {},
    )


def _ensure_checksums(group, part: str, n: int, root: Path, attrs: dict):
    arrays = L.part_arrays(part, attrs)
    k = sum(len(L.read_array_meta(root, p).sample_chunk_keys(0)) for p in arrays)
    _ensure_array(  # the chunk dimension is named per part: the parts' records hold different counts
        group, f"{L.CHECKSUMS}/{part}", shape=(n, k, 2), dtype="uint64", fill_value=0,
        dims=("sample", f"chunk_{part}", "field"), attributes={"fields": ["nbytes", "crc32c"], "arrays": arrays},
    )


def _open_group(root: Path, **kwargs):
    """The store's root group as it is on disk, never through a consolidated copy that may be stale."""
    import zarr

    return zarr.open_group(root, use_consolidated=False, **kwargs)


def _consolidate(root: Path) -> None:
    """Refresh the consolidated metadata in the root zarr.json (xarray opens a store in one read)."""
    import warnings

    import zarr

    with warnings.catch_warnings():  # "not part of the v3 specification": readers that do not know it ignore it
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(root))


def _ensure_coordinates(group, spec: "StoreSpec") -> None:
    """1-D coordinate arrays named after the dimensions, so xarray labels the data: sample ids, frame and label
    offsets, class names, the colour and flow components."""
    values = {"sample": np.array(spec.sample_ids, dtype=str), "frame": np.array(spec.frame_offsets, dtype="int64"),
              "label_frame": np.array(spec.label_offsets, dtype="int64"), "class": np.array(spec.classes, dtype=str),
              "rgb": np.array(["r", "g", "b"]), "uv": np.array(["u", "v"])}
    for name, data in values.items():
        if name in group:
            continue
        array = group.create_array(name, shape=data.shape, dtype=str if data.dtype.kind == "U" else data.dtype,
                                   dimension_names=(name,), attributes={"doc": COORDINATE_DOCS[name]})
        array[:] = data


COORDINATE_DOCS = {
    "sample": "sample id (its labelled frame t)", "frame": "frame offset from t of each stored frame",
    "label_frame": "frame offset from t of each stored label", "class": "class name of each trainId",
    "rgb": "colour channel", "uv": "flow component: u along x, v along y (pixels)",
}


def create_store(path, spec: StoreSpec, *, provenance: dict | None = None) -> Path:
    """Create the store at `path`, or reopen it if it exists with the same layout.

    Safe to call from several processes at once. `provenance` (stage, command,
    sources...) is appended to the store's provenance list unless identical to
    the last entry, so a resumed command does not record itself twice.
    """
    import zarr

    root = Path(path)
    with _store_lock(root):
        if (root / "zarr.json").exists():
            attrs = L.read_store_attrs(root)
            wanted = spec.layout_attrs()
            diff = [k for k in wanted if attrs.get(k) != wanted[k]]
            if diff:
                raise StoreError(f"{root}: a store with a different layout exists here (differs in: {', '.join(diff)})")
            group = _open_group(root, mode="r+")
        else:
            if any(root.iterdir()):
                raise StoreError(f"{root}: directory exists, is not empty, and is not a store")
            attrs = {**spec.layout_attrs(), "compressed": bool(spec.compress), "codecs": spec.codecs, "flows": {}, "provenance": []}
            # "w-", not "w": zarr's "w" deletes and recreates the directory, which
            # would swap the inode our lock is held on and let a waiting process in.
            group = zarr.open_group(root, mode="w-", zarr_format=3, attributes={L.ATTRS_KEY: attrs})

        n, h, w = len(spec.sample_ids), spec.height, spec.width
        codecs = L.store_codecs(attrs)
        _ensure_array(group, L.FRAMES, shape=(n, len(spec.frame_offsets), h, w, 3), dtype="uint8", fill_value=0,
                      dims=("sample", "frame", "y", "x", "rgb"), codec=codecs["frames"], per_frame=True)
        _ensure_array(group, L.LABELS, shape=(n, len(spec.label_offsets), h, w), dtype="uint8",
                      fill_value=L.IGNORE_LABEL, dims=("sample", "label_frame", "y", "x"), codec=codecs["labels"],
                      per_frame=True)
        _ensure_array(group, L.CLASS_COUNTS, shape=(n, len(spec.classes)), dtype="int64", fill_value=0,
                      dims=("sample", "class"))
        for name, extra in sorted(spec.extras.items()):
            _ensure_array(group, L.extra_path(name), shape=(n, *extra["shape"]), dtype=extra["dtype"],
                          fill_value=extra["fill"], dims=("sample", *extra["dims"]), codec=codecs["frames"],
                          attributes={"doc": extra.get("doc", "")})
        _ensure_checksums(group, L.BASE_PART, n, root, spec.layout_attrs())
        _ensure_coordinates(group, spec)

        if provenance is not None:
            entry = {"tool": f"flowprep {__version__}", **provenance}
            history = list(attrs.get("provenance", []))
            if not history or history[-1] != entry:
                history.append(entry)
                group.attrs[L.ATTRS_KEY] = {**attrs, "provenance": history}
        _consolidate(root)
    return root


def add_flow(path, src_offset: int, dst_offset: int, *, provenance: dict | None = None,
             codec: str | None = None) -> str:
    """Declare the flow pair `src_offset -> dst_offset` (stored at `src_offset`); return its name.

    `codec`: the flow array's codec when this call creates it (None: the store's recorded choice); the
    validity mask takes the store's. An existing pair keeps the codecs it was created with.

    Idempotent and safe from several processes. Arrays are created before the
    pair is recorded in the attributes, so an interrupted call is completed by
    the next one.
    """
    root = Path(path)
    with _store_lock(root):
        attrs = L.read_store_attrs(root)
        offsets = attrs["frame_offsets"]
        for o in (src_offset, dst_offset):
            if o not in offsets:
                raise StoreError(f"{root}: frame offset {o} is not stored (store has {offsets})")
        name = L.pair_name(src_offset, dst_offset)
        n, (h, w) = len(attrs["sample_ids"]), attrs["resolution"]
        codecs = L.store_codecs(attrs)
        if codec is not None:
            L.check_codec(codec)
        group = _open_group(root, mode="r+")
        # "scale_factor" is CF's name (xarray decodes pixels with it); "scale" is ours, kept for older readers
        _ensure_array(group, L.flow_path(name), shape=(n, h, w, 2), dtype="int16", fill_value=0,
                      dims=("sample", "y", "x", "uv"), codec=codec or codecs["flows"],
                      attributes={"units": "px", "scale": 1 / L.FLOW_SCALE, "scale_factor": 1 / L.FLOW_SCALE,
                                  "from_offset": src_offset, "to_offset": dst_offset,
                                  "long_name": f"optical flow, frame {src_offset:+d} -> {dst_offset:+d}"})
        _ensure_array(group, L.valid_path(name), shape=(n, h, w), dtype="bool", fill_value=False,
                      dims=("sample", "y", "x"), codec=codecs["flow_valid"])
        _ensure_checksums(group, L.flow_part(name), n, root, attrs)
        if name not in attrs["flows"]:
            k = dst_offset - src_offset
            flows = dict(attrs["flows"])
            flows[name] = {
                "from_offset": src_offset, "to_offset": dst_offset, "stored_at": src_offset,
                "direction": "backward" if k < 0 else "forward", "distance": abs(k),
                "units": "px", "encoding": {"dtype": "int16", "scale": 1 / L.FLOW_SCALE},
                "meaning": "pixel p of frame from_offset moves to p + flow(p) in frame to_offset; (u, v) = (x, y)",
            }
            history = list(attrs["provenance"])
            if provenance is not None:
                history.append({"tool": f"flowprep {__version__}", **provenance})
            group.attrs[L.ATTRS_KEY] = {**attrs, "flows": flows, "provenance": history}
        _consolidate(root)
    return name


def update_attrs(path, key: str, value) -> None:
    """Set one store attribute (e.g. an ingest report) under the store lock."""
    root = Path(path)
    with _store_lock(root):
        attrs = L.read_store_attrs(root)
        _open_group(root, mode="r+").attrs[L.ATTRS_KEY] = {**attrs, key: value}
        _consolidate(root)


def _crc_file(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    return len(data), google_crc32c.value(data)


class StoreWriter:
    """Writes samples into an existing store (see `create_store`).

    One writer per process; several processes may write disjoint samples.
    """

    def __init__(self, path):
        self.root = Path(path)
        self.attrs = L.read_store_attrs(self.root)
        self._group = _open_group(self.root, mode="r+")
        self._arrays: dict = {}
        self._metas: dict[str, L.ArrayMeta] = {}
        self.n_samples = len(self.attrs["sample_ids"])

    def _array(self, path: str):
        if path not in self._arrays:
            L.contained(self.root, path)  # a symlinked folder never takes the writes out of the store
            # write_empty_chunks is a run-time setting: without it an all-zero frame would
            # leave no chunk file, and the memmap reader and checksums need every file.
            self._arrays[path] = self._group[path].with_config({"write_empty_chunks": True})
        return self._arrays[path]

    def _meta(self, path: str) -> L.ArrayMeta:
        if path not in self._metas:
            self._metas[path] = L.read_array_meta(self.root, path, self.attrs)
        return self._metas[path]

    def _checksum_file(self, index: int, part: str) -> Path:
        return self.root / self._meta(f"{L.CHECKSUMS}/{part}").sample_chunk_keys(index)[0]

    def _check_index(self, index: int):
        if not 0 <= index < self.n_samples:
            raise StoreError(f"{self.root}: sample index {index} out of range (store has {self.n_samples})")

    def is_complete(self, index: int, part: str = L.BASE_PART) -> bool:
        self._check_index(index)
        return self._checksum_file(index, part).exists()

    def write_sample(self, index: int, frames: np.ndarray, labels: np.ndarray, extras: dict | None = None) -> None:
        """Write the base part of one sample.

        frames: (F, H, W, 3) uint8 RGB in the order of ``frame_offsets``.
        labels: (L, H, W) uint8 trainIds (255 = ignore) in the order of ``label_offsets``.
        extras: the store's declared extras by name, each of its declared shape and dtype.
        Class pixel counts are computed here from the label of t.
        """
        self._check_index(index)
        sid = self.attrs["sample_ids"][index]
        h, w = self.attrs["resolution"]
        n_classes = len(self.attrs["classes"])
        want_f = (len(self.attrs["frame_offsets"]), h, w, 3)
        want_l = (len(self.attrs["label_offsets"]), h, w)
        for name, arr, want in (("frames", frames, want_f), ("labels", labels, want_l)):
            if arr.shape != want or arr.dtype != np.uint8:
                raise StoreError(f"sample {sid!r}: {name} must be uint8 {want}, got {arr.dtype} {arr.shape}")
        counts = np.zeros(n_classes, dtype=np.int64)
        for j, label in enumerate(labels):
            hist = np.bincount(label.ravel(), minlength=256)
            bad = np.flatnonzero(hist[n_classes:L.IGNORE_LABEL])
            if bad.size:
                raise StoreError(f"sample {sid!r}: label holds values {(bad + n_classes).tolist()} that are neither "
                                 f"a class (0..{n_classes - 1}) nor ignore ({L.IGNORE_LABEL})")
            if self.attrs["label_offsets"][j] == 0:
                counts = hist[:n_classes].astype(np.int64)
        data = {L.FRAMES: frames, L.LABELS: labels, L.CLASS_COUNTS: counts}
        declared, extras = self.attrs.get("extras", {}), extras or {}
        if set(extras) != set(declared):
            raise StoreError(f"sample {sid!r}: extras {sorted(extras)} given, store declares {sorted(declared)}")
        for name, value in extras.items():
            want = tuple(declared[name]["shape"])
            if value.shape != want or value.dtype != np.dtype(declared[name]["dtype"]):
                raise StoreError(f"sample {sid!r}: extra {name!r} must be {declared[name]['dtype']} {want}, "
                                 f"got {value.dtype} {value.shape}")
            data[L.extra_path(name)] = value
        self._write_part(index, L.BASE_PART, data)

    def write_flow(self, index: int, pair: str, flow: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Write one sample's flow for a declared pair.

        flow: (H, W, 2) float, pixels, (u, v) = (x, y), from frame ``from_offset`` to ``to_offset``.
        valid: (H, W) bool or None (all valid). Non-finite or out-of-range vectors are marked invalid.
        """
        self._check_index(index)
        if pair not in self.attrs["flows"]:
            self.attrs = L.read_store_attrs(self.root)  # another process may have declared it
            if pair not in self.attrs["flows"]:
                raise StoreError(f"{self.root}: flow pair {pair!r} is not declared (have {sorted(self.attrs['flows'])})")
        h, w = self.attrs["resolution"]
        if flow.shape != (h, w, 2):
            raise StoreError(f"flow {pair!r} of sample {index} must be ({h}, {w}, 2), got {flow.shape}")
        encoded, representable = L.encode_flow(flow)
        valid = representable if valid is None else (np.asarray(valid, dtype=bool) & representable)
        self._write_part(index, L.flow_part(pair), {L.flow_path(pair): encoded, L.valid_path(pair): valid})

    def _write_part(self, index: int, part: str, data: dict[str, np.ndarray]) -> None:
        record_file = self._checksum_file(index, part)
        record_file.unlink(missing_ok=True)  # the sample is incomplete while it is rewritten
        keys = [key for path in L.part_arrays(part, self.attrs) for key in self._meta(path).sample_chunk_keys(index)]
        for key in keys:  # temporary files a killed writer left behind
            chunk = self.root / key
            for debris in chunk.parent.glob(f"{chunk.name}.*.partial"):
                debris.unlink(missing_ok=True)
        try:
            for path in L.part_arrays(part, self.attrs):
                self._array(path)[index] = data[path]
            record = np.array([_crc_file(self.root / key) for key in keys], dtype=np.uint64)
            self._array(f"{L.CHECKSUMS}/{part}")[index] = record
        except OSError as e:  # zarr's errors name no file: say which store and sample
            sid = self.attrs["sample_ids"][index]
            raise OSError(e.errno, f"{self.root}: writing sample {sid!r} ({part}) failed: "
                                   f"{e.strerror or e}") from None
