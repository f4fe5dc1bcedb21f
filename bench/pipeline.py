"""The training data pipeline at the paper's geometry: CPU time per delivered sample, side by side.

    python bench/pipeline.py [--batches 6] [--workdir bench-data/pipeline] [--workers 0,1,2]

Writes (once) a VIPER-like source store (1920x1080) and a Cityscapes-Seq-like target store (2048x1024), each
with frames t-1, t, the flow t -> t-1 and labels, plus the same frames as JPEG and PNG and the flows as KITTI
PNGs. Then, in one run, with the `dlv2-hrda-udavss-viper-cs` geometry as `vdatrain fit` builds it (source
resized x4/3, 1024x1024 crops, class-ratio retries, flip; target 1024x1024 crops with margins; both with
frame t-1 and the flow):

- pipeline: `IterationBatches` delivering 2 + 2 samples per iteration: each native window copied once into the
  batch in its stored form (frames uint8, flows int16); resizing, cropping and normalising happen on the device;
- before: the same crops made on the CPU with OpenCV (frames resampled uint8, flows decoded to float32 and
  resampled, masks, stacks), as the loader did before;
- memmap read: the same native windows read from the store and copied out (the floor);
- JPEG decode + crop, PNG decode + crop + KITTI flow PNG decode + crop: the reference's inputs for the same
  windows (frames t-1 and t, the flow).

CPU-ms per sample in this process (workers 0), then samples/s with DataLoader workers. Goals (issue 17):
pipeline >= 5x less CPU per sample than JPEG decode + crop, and within 3x of the memmap read.
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
from flowprep.store import StoreSpec, StoreWriter, add_flow, create_store  # noqa: E402
from vdatrain.data.batches import IterationBatches, loader, to_model  # noqa: E402
from vdatrain.data.geometry import margin_mask  # noqa: E402
from vdatrain.data.samples import SampleSpec, StoreSamples  # noqa: E402

cv2.setNumThreads(1)
torch.set_num_threads(1)
N = 4  # samples per store


def texture(rng, h, w) -> np.ndarray:
    small = rng.integers(0, 256, (h // 16, w // 16, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def write_store(path: Path, h: int, w: int, seed: int) -> None:
    if (path / "zarr.json").exists():
        return
    rng = np.random.default_rng(seed)
    ids = [f"s{i:03d}" for i in range(N)]
    create_store(path, StoreSpec("bench", "train", [f"c{k}" for k in range(19)], h, w, ids, [-1, 0], [0]))
    add_flow(path, 0, -1)
    writer = StoreWriter(path)
    for i in range(N):
        frames = np.stack([texture(rng, h, w) for _ in range(2)])
        label = cv2.resize(rng.integers(0, 19, (h // 64, w // 64), dtype=np.uint8), (w, h),
                           interpolation=cv2.INTER_NEAREST)
        writer.write_sample(i, frames, label[None])
        flow = rng.normal(0, 8, (h // 32, w // 32, 2)).astype(np.float32)
        writer.write_flow(i, "bwd_1", cv2.resize(flow, (w, h)), None)
        for slot, o in enumerate((-1, 0)):
            cv2.imwrite(str(path.parent / f"{path.stem}_{i}_{o}.jpg"), frames[slot][..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
            cv2.imwrite(str(path.parent / f"{path.stem}_{i}_{o}.png"), frames[slot][..., ::-1])
        write_kitti(path.parent / f"{path.stem}_{i}_flow.png", cv2.resize(flow, (w, h)))


def specs(workdir: Path, size: float = 1.0) -> tuple[SampleSpec, SampleSpec]:
    common = dict(offsets=(0, -1), flows=("bwd_1",), seed=1)
    crop = (round(1024 * size),) * 2
    source = SampleSpec(store=str(workdir / "source.zarr"), crop=crop, scale=4 / 3, max_class_ratio=0.75,
                        **common)
    target = SampleSpec(store=str(workdir / "target.zarr"), crop=crop, margins=True, labels=False, **common)
    return source, target


class BeforeBatches(IterationBatches):
    """The loader before crops moved to the device: every array resampled on the CPU with OpenCV (frames uint8,
    flows decoded to float32 first), labels int64, margins float32, then stacked: the same crops."""

    margins: dict = {}  # stream -> its native margin mask, built once as the old loader did

    def __getitem__(self, it: int) -> dict:
        out = {}
        for name, data in self.streams.items():
            s, r, items = data.spec, data.reader, []
            margin = self.margins.setdefault(name, margin_mask(r.resolution) if s.margins else None)  # once, as before
            for item in self.dist.shard(self.choose(name, it)):
                d = data.draw(*item, epoch=it) if isinstance(item, tuple) else data.draw(item, epoch=it)
                box, window, i = d.box, d.window, d.index
                one = {"image": torch.from_numpy(np.stack([box.sample(r.frame(i, o, window), window) for o in s.offsets]))}
                if d.label is not None:
                    one["label"] = torch.from_numpy(d.label.astype(np.int64))
                for pair in s.flows:
                    one[f"flow/{pair}"] = torch.from_numpy(box.flow(r.flow(i, pair, window), window).transpose(2, 0, 1).copy())
                    one[f"valid/{pair}"] = torch.from_numpy(box.sample(r.flow_valid(i, pair, window), window, nearest=True))
                if margin is not None:
                    y0, y1, x0, x1 = window
                    one["margin"] = torch.from_numpy(box.sample(margin[y0:y1, x0:x1], window, nearest=True))
                items.append(one)
            out[name] = {k: torch.stack([one[k] for one in items]) for k in items[0]}
        return out


def windows(batches: IterationBatches, its: range) -> list[tuple[str, int, tuple]]:
    """(stream, store index, native window) of every sample the pipeline delivers in `its`."""
    out = []
    for it in its:
        for name, data in batches.streams.items():
            for k in batches.choose(name, it):
                d = data.draw(*k, epoch=it) if isinstance(k, tuple) else data.draw(k, epoch=it)
                out.append((name, d.index, d.window))
    return out


def time_per_sample(fn, items, repeat: int = 1) -> float:
    """CPU milliseconds per item (this process's CPU time, not the wall clock)."""
    start = time.process_time()
    for _ in range(repeat):
        for item in items:
            fn(item)
    return 1000 * (time.process_time() - start) / (repeat * len(items))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=6, help="iterations (2 + 2 samples each) per measurement")
    ap.add_argument("--workdir", type=Path, default=Path("bench-data/pipeline"))
    ap.add_argument("--workers", default="0,1,2", help="DataLoader worker counts for the samples/s column")
    ap.add_argument("--size", type=float, default=1.0, help="scale of stores and crops (1: the paper's; the GPU "
                                                             "acceptance smoke run uses 0.25)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                    help="where the crops are made (the device's share)")
    a = ap.parse_args()
    a.workdir.mkdir(parents=True, exist_ok=True)
    write_store(a.workdir / "source.zarr", round(1080 * a.size), round(1920 * a.size), 1)
    write_store(a.workdir / "target.zarr", round(1024 * a.size), round(2048 * a.size), 2)
    source, target = (StoreSamples(s) for s in specs(a.workdir, a.size))
    batches = IterationBatches(source, 2, seed=1, target=target)
    before = BeforeBatches(source, 2, seed=1, target=target)
    its = range(a.batches)
    batches[0]  # maps opened, first-touch page faults out of the way (warm cache, as in training)
    readers = {"source": source.reader, "target": target.reader}

    def memmap_read(item):
        name, i, (y0, y1, x0, x1) = item
        r = readers[name]
        for o in (0, -1):
            np.array(r.frame(i, o, (y0, y1, x0, x1)))
        np.array(r.flow(i, "bwd_1", (y0, y1, x0, x1)))

    def decode(item, fmt: str):
        name, i, (y0, y1, x0, x1) = item
        stem = a.workdir / f"{name}"
        for o in (0, -1):
            np.ascontiguousarray(cv2.imread(f"{stem}_{i}_{o}.{fmt}")[y0:y1, x0:x1, ::-1])
        if fmt == "png":  # the reference's flows: KITTI PNGs
            np.ascontiguousarray(read_kitti(f"{stem}_{i}_flow.png")[0][y0:y1, x0:x1])

    items = windows(batches, its)
    per_it = 4
    loaded = [batches[it] for it in its]
    rows = [
        ("pipeline: native windows copied once, stored form (crops made on the device)",
         time_per_sample(lambda it: batches[it], its) / per_it),
        ("before: crops resampled on the CPU (OpenCV), float flows", time_per_sample(lambda it: before[it], its) / per_it),
        ("memmap read of the same windows", time_per_sample(memmap_read, items)),
        ("JPEG decode + crop (frames only)", time_per_sample(lambda x: decode(x, "jpg"), items)),
        ("PNG decode + crop + KITTI flow PNG decode", time_per_sample(lambda x: decode(x, "png"), items)),
    ]
    device, sync = torch.device(a.device), torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)
    to_model(loaded[0], device)  # warm-up (kernels, allocator)
    sync()
    start = time.perf_counter()
    for b in loaded:
        to_model(b, device)
    sync()
    device_ms = 1000 * (time.perf_counter() - start) / (per_it * len(loaded))
    pipeline, _, floor, jpeg, _ = (ms for _, ms in rows)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, one thread per process; {a.batches} iterations of "
          f"2 + 2 samples, {source.spec.crop[0]}x{source.spec.crop[1]} crops of {source.reader.resolution[1]}x"
          f"{source.reader.resolution[0]} (x4/3) and {target.reader.resolution[1]}x{target.reader.resolution[0]} stores, "
          f"frames t-1, t and flow")
    print("\n| method | CPU ms per sample | x pipeline |")
    print("|---|---:|---:|")
    for name, ms in rows:
        print(f"| {name} | {ms:.1f} | {ms / pipeline:.2f} |")
    print(f"\nthe device's share (copy, resize, crop, flip, normalise) on {a.device}: {device_ms:.1f} ms per sample "
          f"(wall clock{'' if a.device.startswith('cuda') else ', one CPU thread'})")
    print(f"\ngoal pipeline >= 5x less CPU than JPEG decode + crop: {'met' if jpeg / pipeline >= 5 else 'NOT met'} "
          f"({jpeg / pipeline:.1f}x)")
    print(f"goal pipeline within 3x of the memmap read: {'met' if pipeline / floor <= 3 else 'NOT met'} "
          f"({pipeline / floor:.1f}x)")
    print("\n| DataLoader workers | samples/s (pipeline) | samples/s (before: CPU crops) |")
    print("|---:|---:|---:|")
    for workers in (int(w) for w in a.workers.split(",")):
        rates = []
        for data in (batches, before):
            start = time.perf_counter()
            for _ in loader(data, 0, a.batches, workers):
                pass
            rates.append(per_it * a.batches / (time.perf_counter() - start))
        print(f"| {workers} | {rates[0]:.1f} | {rates[1]:.1f} |")


if __name__ == "__main__":
    main()
