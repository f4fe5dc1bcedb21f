"""Backbones side by side at the paper's evaluation geometry: parameters, FLOPs and seconds per image, and one
training step's seconds and peak memory.

    python bench/backbones.py [--models dlv2,mitb5,vitl-hrda,vitl] [--device cpu|cuda] [--images 1]
                              [--no-time] [--train] [--crop 1024] [--out FILE.md]

Evaluation: one 2048x1024 image predicted as the recipes do (1024x1024 windows at stride 512; HRDA models with
their 512x512 detail windows at stride 256 inside each), with random weights; FLOPs from torch's flop counter
(counted on the meta device: no arithmetic, so they are exact and free on any machine), seconds measured
(`--images` images, on a GPU after one warm-up image), every model in this one run.
`--train`: one training forward and backward at `--crop` (HRDA: context half size plus one detail box) per
setting: fp32 and bf16 autocast, activation checkpointing off and on; seconds and peak memory (CUDA's peak
allocation, or on a CPU the growth of the peak resident memory of a process that runs that step alone).

Models: dlv2 (DeepLabV2-R101, HRDA), mitb5 (MiT-B5 + DAFormer, HRDA), vitl-hrda (DINOv3 ViT-L/16 + simple
pyramid + DAFormer, HRDA), vitl (the same ViT-L/16 single-scale: one map at stride 16, no HRDA).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vdatrain.models import build_model  # noqa: E402
from vdatrain.recipe.schema import BackboneSpec, HRDASpec  # noqa: E402

HRDA = HRDASpec(context_scale=0.5, detail_crop=(512, 512), detail_stride=(256, 256))
VITL = dict(timm="vit_large_patch16_dinov3", drop_path=0.2)
MODELS = {
    "dlv2": ("DeepLabV2-R101 HRDA", lambda ck: build_model("deeplabv2_r101", 19, HRDA, checkpointing=ck)),
    "mitb5": ("MiT-B5 HRDA", lambda ck: build_model("daformer_mitb5", 19, HRDA, checkpointing=ck)),
    "vitl-hrda": ("DINOv3 ViT-L/16 HRDA", lambda ck: build_model("daformer_timm", 19, HRDA, checkpointing=ck,
                                                                backbone=BackboneSpec(**VITL))),
    "vitl": ("DINOv3 ViT-L/16 single-scale", lambda ck: build_model(
        "daformer_timm", 19, checkpointing=ck, backbone=BackboneSpec(**VITL, pyramid="none"))),
}
IMAGE, WINDOW, STRIDE = (1024, 2048), (1024, 1024), (512, 512)


def flops(make) -> float:
    with torch.device("meta"):
        model = make(False).eval()
        x = torch.empty(1, 3, *IMAGE)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model.predict(x, window=WINDOW, stride=STRIDE)
    return counter.get_total_flops()


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def seconds_per_image(model, device, images: int) -> float:
    x = torch.randn(1, 3, *IMAGE, device=device)
    with torch.no_grad():
        if device.type == "cuda":  # warm-up: cuDNN's search, the allocator (a CPU has neither)
            model.predict(x, window=WINDOW, stride=STRIDE)
        sync(device)
        tic = time.perf_counter()
        for _ in range(images):
            model.predict(x, window=WINDOW, stride=STRIDE)
        sync(device)
    return (time.perf_counter() - tic) / images


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_step(make, device, crop: int, bf16: bool, checkpointing: bool) -> tuple[float, float]:
    """Seconds and peak GiB of one forward and backward. On a CPU the peak is the resident set's growth, so each
    step runs in a process of its own (`train_step_in_process`)."""
    model = make(checkpointing).to(device).train()
    x = torch.randn(2, 3, crop, crop, device=device)
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    before = peak_rss_gib()
    sync(device)
    tic = time.perf_counter()
    with amp:
        out = model(x)
        loss = out.logits.float().square().mean() + (out.detail.float().square().mean() if out.detail is not None else 0)
    loss.backward()
    sync(device)
    seconds = time.perf_counter() - tic
    peak = torch.cuda.max_memory_allocated() / 2 ** 30 if device.type == "cuda" else peak_rss_gib() - before
    del model, out, loss
    return seconds, peak


def train_step_in_process(name: str, crop: int, bf16: bool, checkpointing: bool) -> tuple[float, float]:
    import json
    import subprocess

    out = subprocess.run([sys.executable, __file__, "--one-step", f"{name},{crop},{int(bf16)},{int(checkpointing)}"],
                         capture_output=True, text=True, check=True).stdout
    seconds, peak = json.loads(out.strip().splitlines()[-1])
    return seconds, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--images", type=int, default=1, help="timed evaluation images per model (after a warm-up)")
    ap.add_argument("--no-time", action="store_true", help="parameters and FLOPs only")
    ap.add_argument("--train", action="store_true", help="also one training step per precision and checkpointing")
    ap.add_argument("--crop", type=int, default=1024, help="training crop (pixels)")
    ap.add_argument("--out", type=Path, help="also write the tables to this Markdown file")
    ap.add_argument("--one-step", help=argparse.SUPPRESS)  # MODEL,CROP,BF16,CKPT: one CPU step, JSON out
    a = ap.parse_args()
    if a.one_step:
        name, crop, bf16, ck = a.one_step.split(",")
        torch.manual_seed(0)
        print(list(train_step(MODELS[name][1], torch.device("cpu"), int(crop), bf16 == "1", ck == "1")))
        return
    names = a.models.split(",")
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        ap.error(f"--models: unknown {unknown} (choose from {', '.join(MODELS)})")
    device = torch.device(a.device)
    torch.manual_seed(0)
    lines = [f"Evaluation of one {IMAGE[1]}x{IMAGE[0]} image, {WINDOW[1]}x{WINDOW[0]} windows at stride {STRIDE[1]} "
             f"(HRDA: 512 detail windows at 256), random weights, {device.type}",
             "", "| model | params (M) | GFLOPs / image | s / image | vs DeepLabV2-R101 |", "|---|---:|---:|---:|---:|"]
    base = None
    for n in names:
        title, make = MODELS[n]
        f = flops(make)
        model = make(False)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        s = None if a.no_time else seconds_per_image(model.to(device).eval(), device, a.images)
        base = s if n == "dlv2" else base
        ratio = f"{s / base:.2f}x" if s is not None and base else "-"
        lines.append(f"| {title} | {params:.1f} | {f / 1e9:,.0f} | {'-' if s is None else f'{s:.1f}'} | {ratio} |")
        print(lines[-1], flush=True)
        del model
    if a.train:
        lines += ["", f"One training step, batch 2 at {a.crop}x{a.crop} (HRDA: context {a.crop // 2}, one 512 detail "
                      f"box), forward + backward, {device.type}", "",
                  "| model | precision | checkpointing | s / step | peak GiB |", "|---|---|---|---:|---:|"]
        for n in names:
            title, make = MODELS[n]
            for bf16 in (False, True):
                for ck in (False, True):
                    s, peak = (train_step(make, device, a.crop, bf16, ck) if device.type == "cuda" else
                               train_step_in_process(n, a.crop, bf16, ck))
                    lines.append(f"| {title} | {'bf16' if bf16 else 'fp32'} | {'on' if ck else 'off'} | {s:.1f} | "
                                 f"{peak:.1f} |")
                    print(lines[-1], flush=True)
    text = "\n".join(lines)
    print(text)
    if a.out:
        a.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
