"""The training data pipeline at the paper's geometry: the store against the file formats users have, with
equal deliveries, side by side in one run.

    python bench/pipeline.py [--batches 6] [--workdir bench-data/pipeline] [--workers 0,1,2] [--formats ...]

Writes (once) a VIPER-like source (1920x1080) and a Cityscapes-Seq-like target (2048x1024), each as a store
(frames t-1 and t, the flow t -> t-1 with its validity, labels) and as files: JPEG frames, PNG labels, and the
flows as KITTI PNGs (validity in the third channel) and as raw .npy (float32 flow, bool validity).

Every format delivers the same thing for the `dlv2-hrda-udavss-viper-cs` geometry (2 + 2 samples per
iteration; the source resized x4/3 with 1024 crops found by the class-ratio search on the label, flipped; the
target's 1024 crops): frames t-1 and t, the flow, its validity and the label crop, as native windows ready for
the device's resize (the search itself reads labels through the same code, `StoreSamples.box`):

- store: `IterationBatches`, each window copied once from the memory-mapped chunks into the batch;
- jpeg+kitti: JPEG frames, PNG labels, KITTI PNG flows (the reference's inputs) decoded whole, then cropped;
- jpeg+npy: JPEG frames, PNG labels, .npy flows and validity loaded whole, then cropped;
- memmap: the same windows of raw uint8 / float32 .npy files mapped into memory (the floor).

Page caches are emptied (posix_fadvise DONTNEED on every file) and readers opened anew before each iteration,
as in an epoch that reads every sample once. Per sample: CPU ms of this process and bytes read from storage
(/proc/self/io read_bytes). Then samples/s of the store through DataLoader workers. Goals: the store at least
10x less CPU than the reference's formats (jpeg+kitti) and within 2x of the memmap floor.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from flowprep.flow.formats import read_kitti, write_kitti  # noqa: E402
from flowprep.store import StoreReader, StoreSpec, StoreWriter, add_flow, create_store  # noqa: E402
from vdatrain.data.batches import IterationBatches, loader, to_model  # noqa: E402
from vdatrain.data.crops import label_crop  # noqa: E402
from vdatrain.data.samples import SampleSpec, StoreSamples  # noqa: E402

cv2.setNumThreads(1)
torch.set_num_threads(1)
N = 4  # samples per dataset
FORMATS = ("store", "jpeg+kitti", "jpeg+npy", "memmap")


def texture(rng, h, w) -> np.ndarray:
    small = rng.integers(0, 256, (h // 16, w // 16, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def write_data(root: Path, name: str, h: int, w: int, seed: int) -> None:
    """`root/name.zarr` and `root/name/` (the files), once."""
    store, files = root / f"{name}.zarr", root / name
    if (store / "zarr.json").exists():
        return
    rng = np.random.default_rng(seed)
    files.mkdir(parents=True, exist_ok=True)
    create_store(store, StoreSpec("bench", "train", [f"c{k}" for k in range(19)], h, w,
                                  [f"s{i:03d}" for i in range(N)], [-1, 0], [0]))
    add_flow(store, 0, -1)
    writer = StoreWriter(store)
    for i in range(N):
        frames = np.stack([texture(rng, h, w) for _ in range(2)])
        label = cv2.resize(rng.integers(0, 19, (h // 64, w // 64), dtype=np.uint8), (w, h),
                           interpolation=cv2.INTER_NEAREST)
        flow = cv2.resize(rng.normal(0, 8, (h // 32, w // 32, 2)).astype(np.float32), (w, h))
        valid = cv2.resize(rng.random((h // 32, w // 32)), (w, h)) > 0.2
        writer.write_sample(i, frames, label[None])
        writer.write_flow(i, "bwd_1", flow, valid)
        for slot, o in enumerate((-1, 0)):
            cv2.imwrite(str(files / f"{i}_{o}.jpg"), frames[slot][..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
            np.save(files / f"{i}_{o}_raw.npy", frames[slot])
        cv2.imwrite(str(files / f"{i}_label.png"), label)
        write_kitti(files / f"{i}_flow.png", flow, valid)
        np.save(files / f"{i}_flow.npy", flow)
        np.save(files / f"{i}_valid.npy", valid)


def drop_caches(root: Path) -> None:
    """Evict every file under `root` from the page cache (as if read for the first time in an epoch)."""
    for path in root.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def read_bytes() -> int:
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("read_bytes:"):
                return int(line.split()[1])
    except OSError:
        pass
    return -1


class FileSamples(StoreSamples):
    """The same crops through the same search (`StoreSamples.box`), with labels, frames and flows read from files
    of `fmt`; `batch` delivers the native windows the store's batch holds (not packed into one array)."""

    def __init__(self, spec: SampleSpec, files: Path, fmt: str):
        super().__init__(spec)
        self.files, self.fmt, self._labels = files, fmt, {}

    def _label(self, k: int, box) -> np.ndarray:
        i = self.indices[k]
        if i not in self._labels:  # decoded once per sample, as a data set of files reads it
            self._labels[i] = (np.load(self.files / f"{i}_label_raw.npy", mmap_mode="r") if self.fmt == "memmap"
                               else cv2.imread(str(self.files / f"{i}_label.png"), cv2.IMREAD_UNCHANGED))
        window = box.native_window(*self.reader.resolution)
        y0, y1, x0, x1 = window
        return label_crop(np.asarray(self._labels[i][y0:y1, x0:x1]), box, window, self.spec.label_resize,
                          self.reader.resolution)

    def batch(self, draws) -> list:
        out, f = [], self.files
        for d in draws:
            y0, y1, x0, x1 = d.window
            if self.fmt == "memmap":
                frames = [np.load(f / f"{d.index}_{o}_raw.npy", mmap_mode="r") for o in self.spec.offsets]
                flow = np.load(f / f"{d.index}_flow.npy", mmap_mode="r")
                valid = np.load(f / f"{d.index}_valid.npy", mmap_mode="r")
            else:
                frames = [cv2.imread(str(f / f"{d.index}_{o}.jpg"))[..., ::-1] for o in self.spec.offsets]
                if self.fmt == "jpeg+kitti":
                    flow, valid = read_kitti(f / f"{d.index}_flow.png")
                else:
                    flow, valid = np.load(f / f"{d.index}_flow.npy"), np.load(f / f"{d.index}_valid.npy")
            out.append(([np.ascontiguousarray(x[y0:y1, x0:x1]) for x in frames],
                        np.ascontiguousarray(flow[y0:y1, x0:x1]), np.ascontiguousarray(valid[y0:y1, x0:x1]),
                        d.label))
        self._labels.clear()
        return out


def specs(workdir: Path, size: float) -> tuple[SampleSpec, SampleSpec]:
    common = dict(offsets=(0, -1), flows=("bwd_1",), seed=1)
    crop = (round(1024 * size),) * 2
    return (SampleSpec(store=str(workdir / "source.zarr"), crop=crop, scale=4 / 3, max_class_ratio=0.75, **common),
            SampleSpec(store=str(workdir / "target.zarr"), crop=crop, margins=True, labels=False, **common))


def measure(workdir: Path, fmt: str, size: float, its: range) -> tuple[float, float]:
    """(CPU ms, bytes read) per delivered sample of `fmt` over the iterations `its`, cold caches each."""
    cpu, io = 0.0, 0
    for it in its:
        drop_caches(workdir)
        source, target = specs(workdir, size)
        if fmt == "store":
            batches = IterationBatches(StoreSamples(source), 2, seed=1, target=StoreSamples(target))
        else:
            batches = IterationBatches(FileSamples(source, workdir / "source", fmt), 2, seed=1,
                                       target=FileSamples(target, workdir / "target", fmt))
        before_io, start = read_bytes(), time.process_time()
        batches[it]
        cpu += time.process_time() - start
        io += read_bytes() - before_io
    return 1000 * cpu / (4 * len(its)), io / (4 * len(its))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=6, help="iterations (2 + 2 samples each) per measurement")
    ap.add_argument("--workdir", type=Path, default=Path("bench-data/pipeline"))
    ap.add_argument("--workers", default="0,1,2", help="DataLoader worker counts for the samples/s table")
    ap.add_argument("--formats", default=",".join(FORMATS), help=f"comma-separated: {', '.join(FORMATS)}")
    ap.add_argument("--size", type=float, default=1.0, help="scale of the data and crops (1: the paper's; the GPU "
                                                             "acceptance smoke run uses 0.25)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                    help="where the crops are made (the device's share)")
    a = ap.parse_args()
    a.workdir.mkdir(parents=True, exist_ok=True)
    write_data(a.workdir, "source", round(1080 * a.size), round(1920 * a.size), 1)
    write_data(a.workdir, "target", round(1024 * a.size), round(2048 * a.size), 2)
    for name in ("source", "target"):  # the memmap floor's labels (the files hold them as PNG)
        for i in range(N):
            raw = a.workdir / name / f"{i}_label_raw.npy"
            if not raw.exists():
                np.save(raw, np.asarray(StoreReader(a.workdir / f"{name}.zarr").label(i, 0)))
    its = range(1, a.batches + 1)
    rows = {fmt: measure(a.workdir, fmt, a.size, its) for fmt in a.formats.split(",")}
    source, target = specs(a.workdir, a.size)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, one thread; {a.batches} iterations of 2 + 2 "
          f"samples, {source.crop[0]}x{source.crop[1]} crops of {round(1920 * a.size)}x{round(1080 * a.size)} (x4/3, "
          f"class-ratio search) and {round(2048 * a.size)}x{round(1024 * a.size)}; frames t-1 and t, flow, validity, "
          f"label; page caches emptied before each iteration")
    print("\n| format | CPU ms per sample | x store | MB read per sample |")
    print("|---|---:|---:|---:|")
    base = rows.get("store", next(iter(rows.values())))[0]
    for fmt, (ms, io) in rows.items():
        mb = f"{io / 2**20:.1f}" if io >= 0 else "n/a"
        print(f"| {fmt} | {ms:.1f} | {ms / base:.2f} | {mb} |")
    if {"store", "jpeg+kitti", "memmap"} <= set(rows):
        store, ref, floor = rows["store"][0], rows["jpeg+kitti"][0], rows["memmap"][0]
        print(f"\ngoal: the store >= 10x less CPU than JPEG + KITTI PNG: {'met' if ref / store >= 10 else 'NOT met'} "
              f"({ref / store:.1f}x); within 2x of the memmap floor: {'met' if store / floor <= 2 else 'NOT met'} "
              f"({store / floor:.1f}x)")

    batches = IterationBatches(*(StoreSamples(s) for s in (source,)), 2, seed=1, target=StoreSamples(target))
    device, sync = torch.device(a.device), torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)
    loaded = [batches[it] for it in its]
    to_model(loaded[0], device)  # warm-up (kernels, allocator)
    sync()
    start = time.perf_counter()
    for b in loaded:
        to_model(b, device)
    sync()
    print(f"\nthe device's share (copy, resize, crop, flip, normalise) on {a.device}: "
          f"{1000 * (time.perf_counter() - start) / (4 * len(loaded)):.1f} ms per sample")
    print("\n| DataLoader workers | samples/s (store, warm cache) |")
    print("|---:|---:|")
    for workers in (int(w) for w in a.workers.split(",")):
        # the clock starts when the first batch arrives: starting the worker processes (seconds, once per run)
        # is not the loader's rate
        start = None
        for k, _ in enumerate(loader(batches, 0, a.batches + workers + 1, workers)):
            if k == workers:  # each worker has delivered its first batch
                start = time.perf_counter()
        print(f"| {workers} | {4 * a.batches / (time.perf_counter() - start):.1f} |")
    buffers(loaded[0])


def buffers(batch: dict, repeats: int = 20) -> None:
    """What a worker pays to hand a batch over: its buffers allocated and written in fresh shared memory (as in a
    DataLoader worker) against private memory the allocator reuses (as in the main process), side by side."""
    def walk(x):
        if isinstance(x, torch.Tensor):
            yield x
        elif isinstance(x, dict):
            for v in x.values():
                yield from walk(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                yield from walk(v)

    tensors = list(walk(batch))
    seconds = {}
    for shared in (False, True) * 2:  # alternated, the second round counts
        start = time.perf_counter()
        for _ in range(repeats):
            for t in tensors:
                b = torch.empty_like(t)
                (b.share_memory_() if shared else b).fill_(1)
        seconds[shared] = (time.perf_counter() - start) / repeats
    mb = sum(t.numel() * t.element_size() for t in tensors) / 2**20
    print(f"\n| batch buffers ({mb:.0f} MB), allocated and written | ms per batch |")
    print("|---|---:|")
    print(f"| private memory (the main process) | {1000 * seconds[False]:.1f} |")
    print(f"| fresh shared memory (a DataLoader worker) | {1000 * seconds[True]:.1f} |")


if __name__ == "__main__":
    main()
