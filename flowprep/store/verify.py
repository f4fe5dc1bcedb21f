"""Recompute every chunk checksum of a store and report what is missing or corrupt."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import google_crc32c
import numpy as np

from flowprep.errors import StoreError
from flowprep.progress import Progress
from flowprep.store import layout as L


@dataclass
class Problem:
    part: str
    index: int
    sample_id: str
    file: str  # relative to the store root
    what: str

    def __str__(self) -> str:
        return f"sample {self.sample_id!r} (#{self.index}, part {self.part}): {self.file}: {self.what}"


@dataclass
class VerifyReport:
    root: Path
    complete: dict[str, int] = field(default_factory=dict)  # part -> complete samples
    total: int = 0
    chunks: int = 0
    nbytes: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def incomplete(self) -> dict[str, int]:
        """part -> samples whose part was never finished (no checksum record)."""
        return {part: self.total - c for part, c in self.complete.items() if c < self.total}

    @property
    def ok(self) -> bool:
        """Every chunk of every sample present and intact."""
        return not self.problems and not self.incomplete


def _check_chunk(root: Path, key: str, nbytes: int, crc: int) -> str | None:
    try:
        real = L.regular_file(root, key)
        if real.stat().st_size != nbytes:
            return f"{real.stat().st_size} bytes, expected {nbytes} (truncated or replaced)"
        data = real.read_bytes()
    except FileNotFoundError:
        return "missing"
    except StoreError as e:
        return str(e).split(": ", 1)[-1]
    if len(data) != nbytes:
        return f"{len(data)} bytes, expected {nbytes} (truncated or replaced)"
    if google_crc32c.value(data) != crc:
        return "checksum mismatch (corrupt)"
    return None


def verify_store(path, *, progress: bool = False) -> VerifyReport:
    """Check every complete sample of every part against its recorded checksums."""
    root = Path(path)
    attrs = L.read_store_attrs(root)
    ids = attrs["sample_ids"]
    report = VerifyReport(root=root, total=len(ids))
    for part in L.store_parts(attrs):
        record_meta = L.read_array_meta(root, f"{L.CHECKSUMS}/{part}", attrs)
        metas = [L.read_array_meta(root, p, attrs) for p in L.part_arrays(part, attrs)]
        k = record_meta.chunks[1]
        report.complete[part] = 0
        for i in Progress(len(ids), f"verify {part}", "sample", enabled=progress).each(range(len(ids))):
            record_key = record_meta.sample_chunk_keys(i)[0]
            record_file = root / record_key
            if not record_file.exists():
                continue  # incomplete: nothing was promised yet
            try:
                raw = L.regular_file(root, record_key).read_bytes()
            except StoreError as e:
                report.problems.append(Problem(part, i, ids[i], record_key, str(e).split(": ", 1)[-1]))
                continue
            if len(raw) != k * 16:
                report.problems.append(Problem(part, i, ids[i], record_key, f"checksum record has {len(raw)} bytes, expected {k * 16}"))
                continue
            report.complete[part] += 1
            record = np.frombuffer(raw, dtype="<u8").reshape(k, 2)
            keys = [key for meta in metas for key in meta.sample_chunk_keys(i)]
            for key, (nbytes, crc) in zip(keys, record):
                report.chunks += 1
                report.nbytes += int(nbytes)
                what = _check_chunk(root, key, int(nbytes), int(crc))
                if what:
                    report.problems.append(Problem(part, i, ids[i], key, what))
    return report
