"""Zero-copy reader: windows of frames, labels and flows straight from memory-mapped chunk files.

An uncompressed chunk file holds exactly the C-order bytes of one frame (or
label, or flow), so a window ``[y0:y1, x0:x1]`` is a strided view of an
`np.memmap`; the kernel pages in only the rows it touches. A chunk compressed
with one zstd or blosc frame (labels and validity masks by default, flows with
`--flow-codec blosc-lz4`) is decoded whole by numcodecs and kept in a small
cache, because a crop search reads the same label several times. Any other
codec chain is read through zarr-python, transparently.

Process safety: a pickled reader carries only its path. Maps are opened lazily
in the process that uses them and dropped after a fork, so DataLoader workers
with fork, spawn or forkserver each hold their own. Maps are kept in a bounded
LRU because every map holds a file descriptor.

Read-only: windows are views of read-only maps (``writeable=False``); writing
to them raises. Copy before handing data to code that writes in place
(``torch.from_numpy`` on a read-only array would allow writes that crash).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import numpy as np

from flowprep.errors import StoreError
from flowprep.store import layout as L

Window = tuple[int, int, int, int]  # (y0, y1, x0, x1), pixels, half-open


class StoreReader:
    """`verify`: check each chunk file against its sample's checksum record the first time this process
    reads it (one read and crc32c of the whole chunk, then memory-mapped as usual); a flipped byte is a
    StoreError naming the file, never training data."""

    DECODED_BYTES = 64 << 20  # cache of decoded chunks per process (a 1920x1080 label is 2 MB)

    def __init__(self, path, *, max_open: int = 256, verify: bool = False):
        self.root = Path(path)
        self.max_open = max_open
        self.verify = verify
        self.attrs = L.read_store_attrs(self.root)
        self._metas: dict[str, L.ArrayMeta] = {}
        for part in L.store_parts(self.attrs):
            for p in [*L.part_arrays(part, self.attrs), f"{L.CHECKSUMS}/{part}"]:
                self._metas[p] = L.read_array_meta(self.root, p, self.attrs)
        self._complete = {part: self._scan_complete(part) for part in L.store_parts(self.attrs)}
        self._reset_process_state()

    # -- pickling: carry the path only ---------------------------------------------------------
    def __getstate__(self):
        return {"path": str(self.root), "max_open": self.max_open, "verify": self.verify}

    def __setstate__(self, state):
        self.__init__(state["path"], max_open=state["max_open"], verify=state.get("verify", False))

    def _reset_process_state(self):
        self._pid = os.getpid()
        self._maps: OrderedDict[str, np.ndarray] = OrderedDict()
        self._zarr_arrays: dict = {}
        self._decoded: OrderedDict[str, np.ndarray] = OrderedDict()
        self._decoded_bytes = 0
        self._verified: set[str] = set()  # chunk keys checked against their records in this process

    # -- store facts ---------------------------------------------------------------------------
    @property
    def sample_ids(self) -> list[str]:
        return self.attrs["sample_ids"]

    @property
    def frame_offsets(self) -> list[int]:
        return self.attrs["frame_offsets"]

    @property
    def label_offsets(self) -> list[int]:
        return self.attrs["label_offsets"]

    @property
    def classes(self) -> list[str]:
        return self.attrs["classes"]

    @property
    def resolution(self) -> tuple[int, int]:
        h, w = self.attrs["resolution"]
        return h, w

    @property
    def flow_pairs(self) -> dict[str, dict]:
        return self.attrs["flows"]

    def __len__(self) -> int:
        return len(self.sample_ids)

    def _scan_complete(self, part: str) -> np.ndarray:
        meta = self._metas[f"{L.CHECKSUMS}/{part}"]
        return np.array([(self.root / meta.sample_chunk_keys(i)[0]).exists() for i in range(len(self))], dtype=bool)

    def complete(self, part: str = L.BASE_PART) -> np.ndarray:
        """(N,) bool: which samples have `part` fully written (snapshot taken when the reader opened)."""
        if part not in self._complete:
            raise StoreError(f"{self.root}: no part {part!r} (have {sorted(self._complete)})")
        return self._complete[part]

    # -- public reads --------------------------------------------------------------------------
    def frame(self, index: int, offset: int = 0, window: Window | None = None) -> np.ndarray:
        """(h, w, 3) uint8 RGB of frame t+offset of sample `index`; a read-only view when mapped."""
        return self._read(L.FRAMES, L.BASE_PART, index, (self._slot(self.frame_offsets, offset, "frame"),), window)

    def label(self, index: int, offset: int = 0, window: Window | None = None) -> np.ndarray:
        """(h, w) uint8 trainIds (255 = ignore) of frame t+offset."""
        return self._read(L.LABELS, L.BASE_PART, index, (self._slot(self.label_offsets, offset, "label"),), window)

    def flow(self, index: int, pair: str, window: Window | None = None) -> np.ndarray:
        """(h, w, 2) float32 flow in pixels (u = x, v = y) of `pair`, decoded from fixed point (a new array)."""
        self._check_pair(pair)
        return L.decode_flow(self._read(L.flow_path(pair), L.flow_part(pair), index, (), window))

    def flow_fixed(self, index: int, pair: str, window: Window | None = None) -> np.ndarray:
        """(h, w, 2) int16 flow of `pair` as stored: fixed point, 1/32 px (`layout.FLOW_SCALE`); a read-only view
        when mapped. For readers that decode where they compute (the training loader: on the device)."""
        self._check_pair(pair)
        return self._read(L.flow_path(pair), L.flow_part(pair), index, (), window)

    def flow_valid(self, index: int, pair: str, window: Window | None = None) -> np.ndarray:
        """(h, w) bool validity of `pair`'s flow."""
        self._check_pair(pair)
        return self._read(L.valid_path(pair), L.flow_part(pair), index, (), window)

    def extra(self, index: int, name: str, window: Window | None = None) -> np.ndarray:
        """Per-sample extra data (see the store's ``extras`` attribute); `window` for image-like extras."""
        if name not in self.attrs.get("extras", {}):
            raise StoreError(f"{self.root}: no extra {name!r} (have {sorted(self.attrs.get('extras', {}))})")
        return self._read(L.extra_path(name), L.BASE_PART, index, (), window)

    def class_counts(self, index: int) -> np.ndarray:
        """(C,) int64 pixel count of each class in the label of t, at native resolution."""
        return self._read(L.CLASS_COUNTS, L.BASE_PART, index, (), None)

    # -- machinery -----------------------------------------------------------------------------
    def _slot(self, offsets: list[int], offset: int, what: str) -> int:
        try:
            return offsets.index(offset)
        except ValueError:
            raise StoreError(f"{self.root}: no {what} at offset {offset} (store has {offsets})") from None

    def _check_pair(self, pair: str):
        if pair not in self.flow_pairs:
            raise StoreError(f"{self.root}: no flow pair {pair!r} (have {sorted(self.flow_pairs)})")

    def _read(self, path: str, part: str, index: int, inner: tuple[int, ...], window: Window | None) -> np.ndarray:
        if not 0 <= index < len(self):
            raise IndexError(f"sample index {index} out of range for {len(self)} samples")
        if not self._complete[part][index]:
            raise StoreError(f"{self.root}: sample {self.sample_ids[index]!r} has no complete {part!r} data")
        meta = self._metas[path]
        spatial: tuple[slice, ...] = ()
        if window is not None:
            y0, y1, x0, x1 = window
            h, w = self.resolution
            if not (0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w):
                raise ValueError(f"window {window} is not inside the {h}x{w} frame")
            spatial = (slice(y0, y1), slice(x0, x1))
        # Chunks are one sample (and one frame slot) thick and whole along the remaining axes.
        leading = (index, *inner)
        coords = leading + (0,) * (len(meta.shape) - len(leading))
        if self.verify:
            self._verify_chunk(part, index, meta.chunk_key(coords))
        if meta.decodable:
            chunk = self._decode(meta, coords)
        elif not meta.mappable:
            return self._zarr_array(path)[(index, *inner, *spatial)]
        else:
            chunk = self._map(meta, coords)
        return chunk[(0,) * len(leading) + spatial]

    def _verify_chunk(self, part: str, index: int, key: str) -> None:
        if self._pid != os.getpid():
            self._reset_process_state()
        if key in self._verified:
            return
        import google_crc32c

        keys = [k for p in L.part_arrays(part, self.attrs) for k in self._metas[p].sample_chunk_keys(index)]
        record_key = self._metas[f"{L.CHECKSUMS}/{part}"].sample_chunk_keys(index)[0]
        raw = L.regular_file(self.root, record_key).read_bytes()
        if len(raw) != 16 * len(keys):
            raise StoreError(f"{self.root / record_key}: checksum record of {len(raw)} bytes, expected "
                             f"{16 * len(keys)} (run `flowprep verify {self.root}`)")
        nbytes, crc = (int(v) for v in np.frombuffer(raw, dtype="<u8").reshape(-1, 2)[keys.index(key)])
        file = self.root / key
        try:
            data = L.regular_file(self.root, key).read_bytes()
        except FileNotFoundError:
            raise self._missing(file) from None
        if len(data) != nbytes or google_crc32c.value(data) != crc:
            raise StoreError(f"{file}: does not match its checksum record (corrupt; run `flowprep verify "
                             f"{self.root}`)")
        self._verified.add(key)

    def _missing(self, file: Path) -> StoreError:
        return StoreError(f"{file}: chunk file missing (run `flowprep verify {self.root}`)")

    def _cached(self, cache: str, key: str) -> np.ndarray | None:
        """The entry `key` of the LRU `cache` ("_maps" or "_decoded"), marked as used; None when absent. A forked
        process starts with empty caches (maps are not shared across a fork)."""
        if self._pid != os.getpid():
            self._reset_process_state()
        entries = getattr(self, cache)
        found = entries.get(key)
        if found is not None:
            entries.move_to_end(key)
        return found

    def _map(self, meta: L.ArrayMeta, coords: tuple[int, ...]) -> np.ndarray:
        key = meta.chunk_key(coords)
        if (m := self._cached("_maps", key)) is not None:
            return m
        file = self.root / key
        try:
            real = L.regular_file(self.root, key)  # inside the store, a regular file (never a FIFO or device)
            size = real.stat().st_size
        except FileNotFoundError:
            raise self._missing(file) from None
        if size != meta.chunk_nbytes:
            raise StoreError(f"{file}: chunk file has {size} bytes, expected {meta.chunk_nbytes} "
                             f"(truncated or foreign; run `flowprep verify {self.root}`)")
        # A plain ndarray view slices faster than the memmap subclass and keeps the map alive.
        m = np.memmap(real, dtype=meta.dtype, mode="r", shape=meta.chunks).view(np.ndarray)
        self._maps[key] = m
        if len(self._maps) > self.max_open:  # every map holds a file descriptor
            self._maps.popitem(last=False)
        return m

    def _decode(self, meta: L.ArrayMeta, coords: tuple[int, ...]) -> np.ndarray:
        key = meta.chunk_key(coords)
        if (chunk := self._cached("_decoded", key)) is not None:
            return chunk
        file = self.root / key
        try:
            real = L.regular_file(self.root, key)
            if real.stat().st_size > meta.chunk_nbytes + 4096:  # compression never makes a chunk larger than that
                raise StoreError(f"{file}: {real.stat().st_size} bytes for a chunk of {meta.chunk_nbytes} (foreign; "
                                 f"run `flowprep verify {self.root}`)")
            data = real.read_bytes()
        except FileNotFoundError:
            raise self._missing(file) from None
        from numcodecs import Blosc, Zstd

        out = np.empty(meta.chunk_nbytes, np.uint8)  # decoded into a buffer of the layout's size: never more
        try:
            raw = (Zstd() if meta.codecs[1] == "zstd" else Blosc()).decode(data, out=out)
        except Exception as e:  # noqa: BLE001 - the codec libraries raise assorted types for a damaged frame
            raise StoreError(f"{file}: cannot be decoded as {meta.codecs[1]} into the chunk's {meta.chunk_nbytes} "
                             f"bytes ({e}; run `flowprep verify {self.root}`)") from None
        raw = np.frombuffer(raw, np.uint8)
        if raw.nbytes != meta.chunk_nbytes:
            raise StoreError(f"{file}: decodes to {raw.nbytes} bytes, expected {meta.chunk_nbytes} "
                             f"(truncated or foreign; run `flowprep verify {self.root}`)")
        chunk = raw.view(meta.dtype).reshape(meta.chunks)
        chunk.flags.writeable = False  # read-only, like a map
        self._decoded[key] = chunk
        self._decoded_bytes += chunk.nbytes
        while self._decoded_bytes > self.DECODED_BYTES and len(self._decoded) > 1:  # bounded memory
            self._decoded_bytes -= self._decoded.popitem(last=False)[1].nbytes
        return chunk

    def _zarr_array(self, path: str):
        if self._pid != os.getpid():
            self._reset_process_state()
        if path not in self._zarr_arrays:
            import zarr

            self._zarr_arrays[path] = zarr.open_array(self.root / path, mode="r")
        return self._zarr_arrays[path]
