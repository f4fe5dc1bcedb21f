"""Flow engine throughput: pairs per second per engine and precision, side by side in one run.

    python bench/flow.py [--seconds 3] [--ckpt FLOWFORMER.ckpt] [--smoke]

CPU (always): OpenCV DIS presets at 1280x720 and 2048x1024, with end-point error
against the known motion of the synthetic pair (a textured frame under a zoom and
a shift: exact flow).

GPU (when CUDA is available): FlowFormer at 1280x720 and 2048x1024 (432x960 tiles):
- baseline: the plain ptlflow loop, fp32, one pair per call, ptlflow's own tiling;
- ours: tiles of several pairs batched through the model, fp32 / TF32 / fp16 / bf16;
with throughput relative to the baseline and the mean end-point-error change
against our fp32 output. Goal: >= 3x the baseline's throughput with a
mean EPE change < 0.05 px. Without --ckpt the weights are random (throughput is
the same; EPE changes are then not meaningful).

--smoke runs the GPU section's code on the CPU at 76x112 (used by the tests).

--job STORE (e.g. paper-data/stores/cityscapes-seq_train.zarr, 2048x1024): the whole `flowprep flow` job
on a copy of STORE, one process, DIS (or FlowFormer with --gpu), the write in line and on a thread
beside the engine: pairs/s and the share of wall time outside the engine (reading, validity, encoding,
writing). Two pairs the store does not hold yet are computed (t+1 -> t and t-2 -> t-1), one per mode.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import time

import cv2
import numpy as np

from flowprep.flow.engines import make_engine


def synthetic_pair(h: int, w: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first, second, flow first -> second): second = first zoomed by 1% about the centre, shifted 2.5 px."""
    rng = np.random.default_rng(seed)
    tex = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 2.0)
    tex = cv2.addWeighted(tex, 0.7, cv2.resize(rng.integers(0, 256, (h // 32, w // 32, 3), dtype=np.uint8), (w, h)), 0.3, 0)
    s, dx, dy = 1.01, 2.5, -1.0
    m = np.array([[s, 0, (1 - s) * w / 2 + dx], [0, s, (1 - s) * h / 2 + dy]], np.float32)  # first -> second
    second = cv2.warpAffine(tex, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    flow = np.stack([m[0, 0] * x + m[0, 2] - x, m[1, 1] * y + m[1, 2] - y], -1)
    return tex, second, flow


def rate(fn, seconds: float, pairs: int = 1) -> float:
    fn()  # warm up (allocations, cuDNN autotuning)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or n == 0:
        fn()
        n += pairs
    return n / (time.perf_counter() - start)


def epe(a, b, margin=16) -> float:
    """Mean end-point error, leaving out a border of `margin` px (where the synthetic zoom reflects)."""
    h, w = a.shape[:2]
    return float(np.linalg.norm(a - b, axis=-1)[margin:h - margin, margin:w - margin].mean())


def cpu_section(seconds: float):
    print("| engine | size | pairs/s | EPE vs exact (px) |")
    print("|---|---|---:|---:|")
    for h, w in ((720, 1280), (1024, 2048)):
        a, b, truth = synthetic_pair(h, w)
        for name in ("dis-ultrafast", "dis-fast", "dis"):
            engine = make_engine(name)
            r = rate(lambda: engine(a[None], b[None]), seconds)
            print(f"| {name} (1 thread per process) | {w}x{h} | {r:.1f} | {epe(engine(a[None], b[None])[0], truth):.3f} |")


def gpu_section(device: str, seconds: float, ckpt: str | None, sizes, tile, batch: int):
    import torch

    with contextlib.redirect_stdout(io.StringIO()):
        import ptlflow
    for h, w in sizes:
        a, b, truth = synthetic_pair(h, w)
        pairs = np.stack([a] * batch), np.stack([b] * batch)
        # Baseline: ptlflow as a user would call it, fp32, one pair at a time, its own tiling.
        base = ptlflow.get_model("flowformer", ckpt_path=ckpt) if ckpt else ptlflow.get_model("flowformer")
        base.train_size, base.use_tile_input, base.tile_height = tile, True, tile[0]
        base.eval().to(device)
        x = torch.from_numpy(np.stack([a, b])[None, ..., ::-1].copy()).permute(0, 1, 4, 2, 3).float().div(255).to(device)

        def plain():
            with torch.inference_mode():
                out = base({"images": x})["flows"]
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            return out

        base_rate = rate(plain, seconds)
        base = None  # free the baseline before the next models (the closure sees None)
        rows, ref = [], None
        for precision in ("fp32", "tf32", "fp16", "bf16"):
            if precision == "fp16" and not device.startswith("cuda"):
                continue
            engine = make_engine("flowformer", ckpt=ckpt, random_weights=ckpt is None, device=device,
                                 precision=precision, tile=tile, overlap=min(64, min(tile) // 4))
            engine.batch = max(batch, 1) * 2
            if device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            r = rate(lambda: engine(*pairs), seconds, pairs=batch)
            mem = f"{torch.cuda.max_memory_allocated() / 2**30:.1f}" if device.startswith("cuda") else "n/a"
            out = engine(a[None], b[None])[0]
            ref = out if precision == "fp32" else ref
            rows.append((precision, r, mem, epe(out, ref, 0), epe(out, truth)))
            engine = None
        print(f"\nFlowFormer {w}x{h}, tiles {tile[0]}x{tile[1]}, device {device}, weights {ckpt or 'random'}")
        print("| variant | pairs/s | x plain loop | peak GB | EPE change vs fp32 (px) | EPE vs exact (px) |")
        print("|---|---:|---:|---:|---:|---:|")
        print(f"| plain ptlflow loop, fp32, batch 1 | {base_rate:.2f} | 1.0 | | | |")
        for precision, r, mem, change, err in rows:
            print(f"| ours, {precision}, batch {batch} pairs | {r:.2f} | {r / base_rate:.1f} | {mem} | {change:.3f} | {err:.2f} |")


def job_section(store: str, gpu: bool, ckpt: str | None = None) -> None:
    import shutil
    import tempfile
    from pathlib import Path

    from flowprep.flow import job

    engine_seconds = []

    def timed(make):
        def make_timed(*a, **k):
            engine = make(*a, **k)
            inner = engine.flow_and_validity

            def flow_and_validity(*args, **kwargs):  # the engine's share of the job: flows and validity
                start = time.perf_counter()
                out = inner(*args, **kwargs)
                engine_seconds.append(time.perf_counter() - start)
                return out
            engine.flow_and_validity = flow_and_validity
            return engine
        return make_timed

    job.make_engine = timed(job.make_engine)
    print("\n| flow job, one process | pairs | pairs/s | share of wall time outside the engine |")
    print("|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        dst = Path(tmp) / "store.zarr"
        shutil.copytree(store, dst)
        for overlap, pair in ((False, (1, 0)), (True, (-2, -1))):
            engine_seconds.clear()
            spec = job.EngineSpec("flowformer", ckpt, random_weights=ckpt is None) if gpu else job.EngineSpec("dis")
            start = time.perf_counter()
            out = job.run_flow(str(dst), spec, [pair], gpus=1 if gpu else 0, workers=1, progress=False,
                               overlap=overlap)
            wall = time.perf_counter() - start
            n = out["items"]
            print(f"| write {'on a thread beside the engine' if overlap else 'in line'} | {n} | {n / wall:.2f} | "
                  f"{100 * (1 - sum(engine_seconds) / wall):.0f}% |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--ckpt", default=None, help="FlowFormer checkpoint (file or cached name); random weights without")
    ap.add_argument("--batch", type=int, default=4, help="pairs per call for our batched variants")
    ap.add_argument("--smoke", action="store_true", help="the GPU section's code on the CPU at 76x112, tiles 48x64")
    ap.add_argument("--job", metavar="STORE", default=None, help="the whole flow job on a copy of STORE (see above)")
    ap.add_argument("--gpu", action="store_true", help="--job with FlowFormer on the GPU instead of DIS")
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores")
    if args.job:
        cv2.setNumThreads(1)
        job_section(args.job, args.gpu, args.ckpt)
        return
    if args.smoke:
        # 76x112 with 48x64 tiles: a size whose tile grid ptlflow computes correctly (some small sizes
        # make its grid place a tile past the image edge).
        gpu_section("cpu", 0.1, args.ckpt, [(76, 112)], (48, 64), 2)
        return
    cv2.setNumThreads(1)
    cpu_section(args.seconds)
    import torch

    if torch.cuda.is_available():
        print(f"\nGPU: {torch.cuda.get_device_name(0)}")
        gpu_section("cuda", args.seconds, args.ckpt, [(720, 1280), (1024, 2048)], (432, 960), args.batch)
    else:
        print("\nNo CUDA device: FlowFormer GPU figures still to be taken (run this on a GPU machine).")


if __name__ == "__main__":
    main()
