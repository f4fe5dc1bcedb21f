"""The EMA teacher's work per iteration, before and after stacking its forwards, side by side.

    python bench/teacher.py [--geometry demo|paper] [--iters 5]

The teacher predicts the target crop with BatchNorm in training mode (DACS), HRDA's context pass plus a
sliding grid of detail windows, and with flow refinement also the partner frame t+k. Before: one forward
per detail window (each normalised on its own), frame t+k in a second prediction, and the upsample +
softmax of the pseudo-label repeated by the refinement. After: the windows, and t with t+k, stacked in
one forward under `batch_groups` (each window and frame keeps its own statistics), probabilities computed
once. The two are checked equal before timing. Wall seconds per iteration, in this process.

- demo: demo-hrda-mic(-consistency)'s geometry: DeepLabV2-R18, 128 crops, detail 64/32, batch 2;
- paper: dlv2-hrda-*'s: DeepLabV2-R101, 1024 crops, detail 512/256, batch 2 (slow on a CPU).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from vdatrain.adapt.ema import EMATeacher
from vdatrain.adapt.pseudo_label import class_probs, pseudo_label
from vdatrain.models import build_model
from vdatrain.recipe import HRDASpec

GEOMETRY = {"demo": ("deeplabv2_r18", 128, (64, 64), (32, 32)),
            "paper": ("deeplabv2_r101", 1024, (512, 512), (256, 256))}


def before(teacher: EMATeacher, xt, xk, refine: bool):
    """One forward per detail window and per frame (the reference's order), probabilities recomputed."""
    teacher.model.train()
    with torch.no_grad():
        logits = teacher.model.predict(xt)  # outside batch_groups: HRDA predicts window by window
        pl, pw = pseudo_label(logits, 0.968, xt.shape[-2:])
        if not refine:
            return pl
        logits_k = teacher.model.predict(xk)
        _, pw_k = pseudo_label(logits_k, 0.968, xt.shape[-2:])
        probs_k, probs_t = class_probs(logits_k, xt.shape[-2:]), class_probs(logits, xt.shape[-2:])
        return pl, probs_t.max(1)[0], probs_k, pw_k


def after(teacher: EMATeacher, xt, xk, refine: bool):
    if not refine:
        return class_probs(teacher.predict(xt), xt.shape[-2:]).max(1)[1]
    both = teacher.predict(torch.cat([xt, xk]), group=len(xt))
    conf_t, pl = class_probs(both[:len(xt)], xt.shape[-2:]).max(1)
    probs_k = class_probs(both[len(xt):], xt.shape[-2:])
    return pl, conf_t, probs_k, (probs_k.max(1)[0] >= 0.968).float().mean() * torch.ones_like(conf_t)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--geometry", choices=sorted(GEOMETRY), default="demo")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    dev = torch.device(a.device)
    name, crop, window, stride = GEOMETRY[a.geometry]
    torch.manual_seed(0)
    model = build_model(name, 19, hrda=HRDASpec(detail_crop=window, detail_stride=stride)).to(dev)
    teacher = EMATeacher(model)
    xt, xk = torch.randn(2, 3, crop, crop, device=dev), torch.randn(2, 3, crop, crop, device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for refine in (False, True):  # the same results first
        old, new = before(teacher, xt, xk, refine), after(teacher, xt, xk, refine)
        for o, n in zip(old if refine else [old], new if refine else [new]):
            # labels may flip where two classes tie to rounding; probabilities agree to the convolutions' rounding
            assert (o.float() - n.float()).abs().mean() < 1e-3, "stacked and separate forwards differ"
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, "
          f"{torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'CPU'}; "
          f"{name}, HRDA detail {window[0]}/{stride[0]}, batch 2 x {crop}x{crop}, {a.iters} iterations\n")
    print("| teacher work per iteration | before (s) | after (s) | before / after |")
    print("|---|---:|---:|---:|")
    for label, refine in (("pseudo-label (demo-hrda-mic)", False), ("+ partner frame for refinement "
                                                                   "(demo-hrda-mic-consistency)", True)):
        seconds = {}
        for way, fn in (("before", before), ("after", after), ("before", before), ("after", after)):
            sync()
            start = time.perf_counter()
            for _ in range(a.iters):
                fn(teacher, xt, xk, refine)
            sync()
            seconds.setdefault(way, []).append((time.perf_counter() - start) / a.iters)
        b, f = min(seconds["before"]), min(seconds["after"])
        print(f"| {label} | {b:.3f} | {f:.3f} | {b / f:.2f} |")


if __name__ == "__main__":
    main()
