"""Random-window read throughput on one core: memmap reader vs zarr-python vs image decoding.

    python bench/loader.py [--frames 8] [--seconds 2] [--workdir bench-data]

Writes a store of 1024x2048 frames (plus a flow pair), the same frames as JPEG
(quality 95) and PNG, and the flows as KITTI 16-bit PNGs, then measures, side
by side in one run and with one thread, how many random 512x512 and 1024x1024
windows each method delivers per second, warm cache. Every method ends with a
contiguous array of the window in memory (what a data loader needs).
memcpy bandwidth is measured in the same run to put the memmap figure in scale.

Goals: memmap >= 20x JPEG decoding, and >= 40% of memcpy bandwidth.
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
import zarr  # noqa: E402

from flowprep.store import StoreReader, StoreSpec, StoreWriter, add_flow, create_store  # noqa: E402

H, W = 1024, 2048


def synthetic_frame(rng: np.random.Generator) -> np.ndarray:
    """A street-like image (smooth regions, edges, mild noise) so codecs see realistic content."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    img = np.empty((H, W, 3), np.float32)
    for c in range(3):
        img[..., c] = 100 + 60 * np.sin(x / rng.uniform(40, 200) + c) * np.cos(y / rng.uniform(40, 200))
    for _ in range(40):  # blocks: buildings, cars
        y0, x0 = rng.integers(0, H - 100), rng.integers(0, W - 200)
        img[y0:y0 + rng.integers(20, 300), x0:x0 + rng.integers(20, 400)] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def synthetic_flow(rng: np.random.Generator) -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    return np.stack([(x - W / 2) / 40 + rng.normal(0, 0.3, (H, W)), (y - H / 2) / 60], -1).astype(np.float32)


def kitti_encode(flow: np.ndarray) -> np.ndarray:
    """(H, W, 2) px -> (H, W, 3) uint16 BGR for cv2.imwrite: R = u*64+2^15, G = v*64+2^15, B = valid."""
    u = np.clip(flow[..., 0] * 64 + 32768, 0, 65535).astype(np.uint16)
    v = np.clip(flow[..., 1] * 64 + 32768, 0, 65535).astype(np.uint16)
    return np.stack([np.ones_like(u), v, u], -1)


def prepare(workdir: Path, n: int):
    store = workdir / "frames.zarr"
    spec = StoreSpec(dataset="bench", split="train", classes=["a", "b"], height=H, width=W,
                     sample_ids=[f"f{i}" for i in range(n)], frame_offsets=[0, 1])
    create_store(store, spec)
    add_flow(store, 0, 1)
    writer = StoreWriter(store)
    for i in range(n):
        if writer.is_complete(i, "flow_fwd_1"):
            continue
        rng = np.random.default_rng(i)
        frame, flow = synthetic_frame(rng), synthetic_flow(rng)
        writer.write_sample(i, np.stack([frame, frame]), np.zeros((1, H, W), np.uint8))
        writer.write_flow(i, "fwd_1", flow)
        cv2.imwrite(str(workdir / f"{i}.jpg"), frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(str(workdir / f"{i}.png"), frame[..., ::-1])
        cv2.imwrite(str(workdir / f"{i}_flow.png"), kitti_encode(flow))
    return store


def rate(fn, windows, seconds: float) -> float:
    """Windows per second, running fn over the window list (cycled) for about `seconds`."""
    for w in windows[:3]:
        fn(*w)  # warm: page cache, maps, decoder tables
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn(*windows[done % len(windows)])
        done += 1
    return done / (time.perf_counter() - start)


def memcpy_bandwidth(seconds: float) -> float:
    src = np.random.default_rng(1).integers(0, 255, 64 << 20, dtype=np.uint8)
    dst = np.empty_like(src)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        np.copyto(dst, src)
        n += 1
    return n * src.nbytes / (time.perf_counter() - start)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=8, help="frames in the store (all stay in page cache)")
    ap.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    ap.add_argument("--workdir", type=Path, default=Path("bench-data/loader"), help="where test data is written (kept)")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    args.workdir.mkdir(parents=True, exist_ok=True)
    store = prepare(args.workdir, args.frames)
    reader = StoreReader(store)
    group = zarr.open_group(store, mode="r")
    zframes = group["frames"]
    wd = args.workdir

    methods = {
        "memmap reader (frame)": lambda i, y, x, s: np.ascontiguousarray(reader.frame(i, 0, (y, y + s, x, x + s))),
        "zarr-python slice (frame)": lambda i, y, x, s: zframes[i, 0, y:y + s, x:x + s],
        "OpenCV JPEG decode + crop": lambda i, y, x, s: np.ascontiguousarray(cv2.imread(str(wd / f"{i}.jpg"))[y:y + s, x:x + s, ::-1]),
        "OpenCV PNG decode + crop": lambda i, y, x, s: np.ascontiguousarray(cv2.imread(str(wd / f"{i}.png"))[y:y + s, x:x + s, ::-1]),
        "memmap reader (flow, decoded)": lambda i, y, x, s: reader.flow(i, "fwd_1", (y, y + s, x, x + s)),
        "KITTI flow PNG decode + crop": lambda i, y, x, s: (
            (cv2.imread(str(wd / f"{i}_flow.png"), cv2.IMREAD_UNCHANGED)[y:y + s, x:x + s, 2:0:-1].astype(np.float32) - 32768) / 64),
    }
    rng = np.random.default_rng(2)
    results = {}
    copy_bw = memcpy_bandwidth(args.seconds)
    for size in (512, 1024):
        windows = [(int(rng.integers(args.frames)), int(rng.integers(0, H - size + 1)), int(rng.integers(0, W - size + 1)), size)
                   for _ in range(256)]
        for name, fn in methods.items():
            results[name, size] = rate(fn, windows, args.seconds)

    jpeg = {s: results["OpenCV JPEG decode + crop", s] for s in (512, 1024)}
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, one thread; "
          f"{args.frames} frames {H}x{W}, warm page cache")
    print(f"memcpy bandwidth (same run): {copy_bw / 1e9:.2f} GB/s\n")
    print("| method | 512² windows/s | 1024² windows/s | x JPEG (512 / 1024) | GB/s (1024) | % of memcpy (1024) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in methods:
        r5, r10 = results[name, 512], results[name, 1024]
        bytes_per = 1024 * 1024 * (8 if "flow" in name else 3)  # delivered bytes per window
        gbs = r10 * bytes_per / 1e9
        print(f"| {name} | {r5:,.0f} | {r10:,.0f} | {r5 / jpeg[512]:.1f} / {r10 / jpeg[1024]:.1f} | {gbs:.2f} | {100 * gbs * 1e9 / copy_bw:.0f}% |")
    mm = {s: results["memmap reader (frame)", s] for s in (512, 1024)}
    share = mm[1024] * 1024 * 1024 * 3 / copy_bw
    print(f"\ngoal memmap >= 20x JPEG: {'met' if min(mm[s] / jpeg[s] for s in mm) >= 20 else 'NOT met'} "
          f"({mm[512] / jpeg[512]:.0f}x at 512, {mm[1024] / jpeg[1024]:.0f}x at 1024)")
    print(f"goal memmap >= 40% of memcpy: {'met' if share >= 0.4 else 'NOT met'} ({100 * share:.0f}% at 1024)")


if __name__ == "__main__":
    main()
