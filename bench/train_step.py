"""Training step cost of the paper's models: iterations per second and peak memory, side by side in one run.

    python bench/train_step.py [--models deeplabv2_r101,daformer_mitb5] [--batch 2] [--crop 1024]
                               [--iters 3] [--methods supervised,hrda-mic,mom] [--device auto|cpu|cuda] [--smoke]

One training step as `vdatrain fit` runs it, on random images and labels, for each
model, method and precision (fp32; bf16 autocast):
- supervised: forward, pixel-averaged cross-entropy at label resolution, backward,
  AdamW step with the paper's parameter groups (source-only / oracle);
- hrda / hrda-mic: the paper's self-training iteration at batch B source + B target
  (source loss + feature distance, EMA-teacher pseudo-labels by sliding detail
  windows, ClassMix + strong augmentation, MIC for hrda-mic, EMA update), with the
  `dlv2-hrda(-mic)-viper-cs` recipe's settings (detail crop = crop / 2);
- tps / davsn / udavss / mom: the Table 4 video recipes `dlv2-hrda-<method>-viper-cs`
  (ACCEL, video discriminator, flow-refined pseudo-labels, consistent mixup) on two
  frames and a random flow, refinement on from the first step.
Each configuration runs in its own process so its peak memory is its own: on a GPU
torch's peak allocation, on the CPU the process's peak resident set. The table
gives seconds per iteration, iterations per second and peak memory, with bf16
relative to fp32 of the same model.

--smoke: small models (deeplabv2_r18, daformer_mitb0), crop 64, 1 iteration, supervised and hrda-mic
(used by the tests).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time


def one(model_name: str, method: str, precision: str, batch: int, crop: int, iters: int, device: str) -> dict:
    """Time `iters` steps after one warm-up step; returns the figures of this configuration."""
    import resource
    from functools import partial

    import torch

    from vdatrain.methods import build_method
    from vdatrain.models import build_model
    from vdatrain.optim import build_optimizer
    from vdatrain.recipe import load_recipe

    torch.manual_seed(0)
    dev = torch.device(device)
    half = crop // 2
    overrides = [f"model.name={model_name}", f"source.crop=[{crop},{crop}]", f"target.crop=[{crop},{crop}]",
                 f"model.hrda.detail_crop=[{half},{half}]", f"model.hrda.detail_stride=[{half // 2},{half // 2}]"]
    if method == "supervised":
        recipe = load_recipe("dlv2-source-viper-cs", [f"model.name={model_name}"])
    elif method in ("hrda", "hrda-mic"):
        mic = [f"adapt.mic={{block: {max(8, crop // 16)}}}"] if method == "hrda-mic" else []  # 64 at 1024
        recipe = load_recipe(f"dlv2-{method}-viper-cs", overrides + mic)
    else:
        recipe = load_recipe(f"dlv2-hrda-{method}-viper-cs", overrides)
        if recipe.adapt.refine:
            recipe.adapt.refine.start_iter = 0
    model = build_model(model_name, 19, recipe.model.hrda, recipe.model.accel).to(dev).train()
    algorithm = build_method(recipe, model)
    optimizer = build_optimizer(model, 6e-5, 0.01, 10.0, (0.9, 0.999))
    amp = partial(torch.autocast, dev.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    stream = lambda: {"image": torch.randn(batch, 2, 3, crop, crop, device=dev),  # frames t, t-1
                      "label": torch.randint(0, 19, (batch, crop, crop), device=dev),
                      "margin": torch.ones(batch, crop, crop, device=dev),
                      "flow/bwd_1": torch.randn(batch, 2, crop, crop, device=dev) * 4,
                      "valid/bwd_1": torch.ones(batch, crop, crop, dtype=torch.bool, device=dev)}
    data = {"source": stream(), "target": stream()}
    it = [0]

    def step():
        optimizer.zero_grad(set_to_none=True)
        for terms in algorithm.losses(model, data, it[0], amp):
            sum(terms.values()).backward()
        optimizer.step()
        for part in algorithm.optimizers:  # the video discriminator's own step, as the training loop does
            part.step(it[0])
        algorithm.after_step(model, it[0])
        it[0] += 1
        if dev.type == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up: allocations, cuDNN algorithm search
    start = time.perf_counter()
    for _ in range(iters):
        step()
    seconds = (time.perf_counter() - start) / iters
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev) / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    return {"model": model_name, "method": method, "precision": precision, "s_per_it": seconds, "peak_gib": peak}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="deeplabv2_r101,daformer_mitb5", help="comma-separated model names")
    ap.add_argument("--batch", type=int, default=2, help="images per step (the paper: 2)")
    ap.add_argument("--crop", type=int, default=1024, help="square crop side in pixels (the paper: 1024)")
    ap.add_argument("--iters", type=int, default=3, help="timed steps per configuration (after 1 warm-up)")
    ap.add_argument("--precisions", default="fp32,bf16", help="comma-separated: fp32, bf16")
    ap.add_argument("--methods", default="supervised", help="comma-separated: supervised, hrda, hrda-mic, tps, davsn, udavss, mom")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--smoke", action="store_true", help="small models, crop 64, 1 step, supervised and hrda-mic")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one configuration, print JSON
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(**json.loads(a.one))))
        return
    if a.smoke:
        a.models, a.crop, a.iters, a.methods = "deeplabv2_r18,daformer_mitb0", 64, 1, "supervised,hrda-mic"
    import torch

    device = ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device
    name = torch.cuda.get_device_name() if device == "cuda" else f"{platform.processor() or 'cpu'}, {torch.get_num_threads()} threads"
    print(f"train step, batch {a.batch}, crop {a.crop}x{a.crop}, {a.iters} timed steps, {device} ({name}), torch {torch.__version__}")
    rows = []
    for model in a.models.split(","):
        for method in a.methods.split(","):
            for precision in a.precisions.split(","):
                config = dict(model_name=model, method=method, precision=precision, batch=a.batch, crop=a.crop,
                              iters=a.iters, device=device)
                proc = subprocess.run([sys.executable, __file__, "--one", json.dumps(config)], capture_output=True,
                                      text=True)
                if proc.returncode != 0:
                    tail = (proc.stderr.strip().splitlines() or ["killed (out of memory?)"])[-1]
                    rows.append({"model": model, "method": method, "precision": precision, "error": tail})
                    continue
                rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print("| model | method | precision | s/it | it/s | peak GiB | speed vs fp32 | memory vs fp32 |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    fp32 = {(r["model"], r["method"]): r for r in rows if r["precision"] == "fp32" and "error" not in r}
    for r in rows:
        if "error" in r:
            print(f"| {r['model']} | {r['method']} | {r['precision']} | failed: {r['error']} | | | | |")
            continue
        base = fp32.get((r["model"], r["method"]))
        speed = f"{base['s_per_it'] / r['s_per_it']:.2f}x" if base else "n/a"
        memory = f"{r['peak_gib'] / base['peak_gib']:.2f}x" if base else "n/a"
        print(f"| {r['model']} | {r['method']} | {r['precision']} | {r['s_per_it']:.3f} | {1 / r['s_per_it']:.2f} | "
              f"{r['peak_gib']:.2f} | {speed} | {memory} |")
    if any("error" in r for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
