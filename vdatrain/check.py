"""`vdatrain check`: run a recipe for a few iterations at its real geometry; report what a user needs
before booking GPUs.

One check, in order (the first step that fails ends it and names itself):
1. validate: the recipe, its stores and weight files, as `vdatrain fit` does;
2. train: N iterations through `vdatrain.train.fit` itself (the real data loader, methods, loop
   and checkpoint) in a scratch run folder, with every part of the recipe active from the first
   iteration: a part that normally starts later is started at once (today flow-refined pseudo-labels,
   `adapt.refine.start_iter`), and the check lists every value it changed;
3. evaluate: the checkpoint loaded as `vdatrain eval` loads it, then the first val image of the eval
   store at full size with the recipe's sliding windows (dual-frame for ACCEL models, with the
   temporal metrics of the store's flow pairs);
4. report: input and crop shapes per stream, seconds per iteration (the first iteration, which
   allocates, apart), peak memory (CUDA's maximum allocated on a GPU; on the CPU the process's
   peak resident set, DataLoader workers not included), parameters, and the estimated wall time of
   the recipe's full schedule (iterations x s/it + evaluations x val images x s/image).

`narrow=True` swaps the model for the narrow network of its family (`deeplabv2_check`,
`daformer_check`) and drops the pretrained and init weights, so a CPU can check the geometry and code
paths of a ResNet-101 or MiT-B5 recipe in seconds (the timings then say nothing about the real model).
"""

from __future__ import annotations

import copy
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import torch

from vdatrain.distributed import process_device
from vdatrain.recipe import Recipe, RecipeError, check_paths

# Settings a check can take, by name (`vdatrain check --modes`): each toggle of the GPU settings against the
# recipe's own ("default"), so their effect on s/it and memory is measured side by side in one run.
MODES = {"default": [], "fp32": ["train.precision=fp32"], "fp32+ckpt": ["train.precision=fp32", "model.checkpointing=true"],
         "bf16": ["train.precision=bf16"], "bf16+ckpt": ["train.precision=bf16", "model.checkpointing=true"],
         "tf32-off": ["train.tf32=false"], "cudnn-search-off": ["train.cudnn_benchmark=false"],
         "channels-last": ["train.channels_last=true"],
         "bf16+channels-last": ["train.precision=bf16", "train.channels_last=true"],
         "teacher-per-window": ["adapt.teacher_statistics=per_window"]}
MEMORY_MODES = ["fp32", "fp32+ckpt", "bf16", "bf16+ckpt"]  # `--memory-modes`: precision x activation checkpointing


class PeakMemory:
    """Peak memory in GiB over a `with` block: CUDA's maximum allocated on a GPU, else the process's
    resident set sampled every 5 ms (Linux /proc; elsewhere the lifetime peak from getrusage)."""

    def __init__(self, device: torch.device):
        self.device, self.gib = device, 0.0
        self._stop = threading.Event()
        self._statm = Path("/proc/self/statm")

    def _rss(self) -> int:
        return int(self._statm.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self):
        while not self._stop.wait(0.005):
            self._peak = max(self._peak, self._rss())

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self._statm.exists():
            self._peak = self._rss()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.gib = torch.cuda.max_memory_allocated(self.device) / 2**30
        elif self._statm.exists():
            self._stop.set()
            self._thread.join()
            self.gib = max(self._peak, self._rss()) / 2**30
        else:
            self.gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB (Linux) -> GiB
        return False


def check_recipe_for(recipe: Recipe, iters: int, narrow: bool = False) -> tuple[Recipe, list[str]]:
    """The recipe the check trains, and the values it changed ("key: old -> new")."""
    from vdatrain.models import MODELS, check_model

    r = copy.deepcopy(recipe)
    changes = [f"train.iters: {r.train.iters} -> {iters}"]
    r.train.iters = iters
    r.train.eval_every, r.train.log_every, r.train.checkpoint_every = 0, 1, iters  # the check evaluates after
    if r.adapt and r.adapt.refine and r.adapt.refine.start_iter > 0:
        changes.append(f"adapt.refine.start_iter: {r.adapt.refine.start_iter} -> 0 (refinement from iteration 0)")
        r.adapt.refine.start_iter = 0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if r.train.workers > cpus:  # more loader processes than CPUs only contend (torch warns about it)
        changes.append(f"train.workers: {r.train.workers} -> {cpus} (the CPUs this process may use)")
        r.train.workers = cpus
    if narrow and r.model.backbone is not None:  # a timm family: the same architecture, narrow
        narrowed = r.model.backbone.narrow()
        changes.append(f"model.backbone: {r.model.backbone.timm} -> depth {narrowed.depth}, width "
                       f"{narrowed.embed_dim} (narrow check network)")
        r.model.backbone = narrowed
    if narrow and check_model(r.model.name) != r.model.name:
        narrow_name = check_model(r.model.name)
        if narrow_name is None:
            raise RecipeError(f"model.name: {r.model.name!r} has no narrow check model (registered: "
                              f"{', '.join(n for n in MODELS if n.endswith('_check'))})")
        changes.append(f"model.name: {r.model.name} -> {narrow_name} (narrow check network)")
        r.model.name = narrow_name
    if narrow:
        for key in ("pretrained", "init"):
            if getattr(r.model, key):
                changes.append(f"model.{key}: {getattr(r.model, key)} -> none (random initialisation)")
                setattr(r.model, key, None)
    return r, changes


def _iteration_seconds(records: list[dict]) -> list[float]:
    """Per-iteration durations from records logged every iteration (each holds the running mean)."""
    totals = [rec["seconds_per_it"] * n for n, rec in enumerate(records, 1)]
    return [b - a for a, b in zip([0.0, *totals], totals)]


def _stream(recipe: Recipe, part: str, shapes: dict) -> dict:
    from flowprep.store import StoreReader

    data = getattr(recipe, part)
    reader = StoreReader(data.store)
    h, w = reader.resolution
    return {"store": Path(data.store).name, "dataset": reader.attrs.get("dataset"), "frame": [h, w],
            "scale": data.scale, "resized": [round(h * data.scale), round(w * data.scale)], "crop": list(data.crop),
            "offsets": list(data.offsets), "flows": list(data.flows), "batch": shapes.get(part, {})}


def run_check(recipe: Recipe, iters: int = 2, narrow: bool = False, val_images: int | None = None,
              run_dir=None, progress: bool = False) -> dict | None:
    """Check one recipe (steps in the module docstring). Returns the report (`ok`, and on failure `step` and
    `error`); None in processes other than the main one under torchrun."""
    from vdatrain.distributed import Dist
    from vdatrain.evaluation import evaluate
    from vdatrain.models import build_model
    from vdatrain.checkpoint import load_checkpoint_weights
    from vdatrain.checkpoint import CHECKPOINT
    from vdatrain.train import fit

    out = {"recipe": recipe.name, "iters": iters, "narrow": narrow, "ok": False, "step": "validate"}
    scratch = run_dir is None
    run_dir = Path(tempfile.mkdtemp(prefix="vdatrain-check-") if scratch else run_dir)
    main = int(os.environ.get("RANK", "0")) == 0
    try:
        r, out["changes"] = check_recipe_for(recipe, iters, narrow)
        check_paths(r)
        out |= {"model": r.model.name, "precision": r.train.precision, "checkpointing": r.model.checkpointing,
                "workers": r.train.workers, "batch_size": r.train.batch_size, "processes": int(os.environ.get("WORLD_SIZE", "1"))}
        device = process_device()
        out["device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"

        out["step"] = "train"
        with PeakMemory(device) as mem:
            records = fit(r, run_dir, progress=progress)
        if not main:
            return None
        out["step"] = "report"
        seconds = _iteration_seconds(records)
        shapes = records[0].get("shapes", {}) if records else {}
        out |= {"first_it_s": seconds[0], "s_per_it": sum(seconds[1:]) / (len(seconds) - 1) if len(seconds) > 1
                else seconds[0], "train_peak_gib": mem.gib, "loss": records[-1]["loss"],
                "streams": {part: _stream(r, part, shapes) for part in ("source", "target") if getattr(r, part)}}
        if r.model.hrda:
            crop = r.source.crop
            out["hrda"] = {"context": [round(crop[0] * r.model.hrda.context_scale), round(crop[1] * r.model.hrda.context_scale)],
                           "detail": list(r.model.hrda.detail_crop), "detail_stride": list(r.model.hrda.detail_stride)}

        out["step"] = "evaluate"
        model = build_model(r.model.name, r.model.num_classes, r.model.hrda, r.model.accel, backbone=r.model.backbone)
        out["parameters"] = sum(p.numel() for p in model.parameters())
        load_checkpoint_weights(model, run_dir / CHECKPOINT)
        with PeakMemory(device) as mem:
            tic = time.perf_counter()
            result = evaluate(r, model, Dist(device=device), temporal=True, limit=1)
            eval_s = time.perf_counter() - tic
        if result.get("skipped"):
            raise RecipeError(f"eval.store: {r.eval.store}: evaluation skipped {', '.join(result['skipped'])} "
                              f"(incomplete in the store, or a partner frame or flow is missing)")
        if result["labelled_pixels"] == 0:
            raise RecipeError(f"eval.store: {r.eval.store}: the first val image has no labelled pixel")
        from flowprep.store import StoreReader

        reader = StoreReader(r.eval.store)
        n_val = val_images if val_images is not None else int(reader.complete().sum())
        out["eval"] = {"store": Path(r.eval.store).name, "image": list(reader.resolution), "window": list(r.eval.window),
                       "stride": list(r.eval.stride), "dual_frame": r.model.accel is not None,
                       "temporal_pairs": sorted(result.get("temporal", {})), "seconds": eval_s, "peak_gib": mem.gib}
        t = recipe.train
        evals = (t.iters // t.eval_every if t.eval_every else 0) + 1  # during training, and the final `vdatrain eval`
        # a narrow network's seconds say nothing about the real model's: no estimate then
        out["full_schedule"] = None if narrow else {
            "iters": t.iters, "evals": evals, "val_images": n_val,
            "hours": (t.iters * out["s_per_it"] + evals * n_val * eval_s) / 3600}
        out["ok"], out["step"] = True, "done"
    except Exception as e:  # noqa: BLE001 - a check reports the step that failed and its error, never a traceback
        out["error"] = str(e) if isinstance(e, RecipeError) else f"{type(e).__name__}: {e}"
        frame = traceback.extract_tb(e.__traceback__)[-1]
        out["where"] = f"{frame.filename}:{frame.lineno}"
    finally:
        if scratch:  # every process's own scratch folder (only the main one writes into it)
            shutil.rmtree(run_dir, ignore_errors=True)
    return out


# Several checks -------------------------------------------------------------------------------------------

def _check_in_subprocess(name: str, sets: list[str], iters: int, narrow: bool, val_images, threads: int) -> dict:
    """One `vdatrain check` in a fresh process of `threads` CPU threads; its report, or a failed one with the
    process's last line."""
    with tempfile.TemporaryDirectory(prefix="vdatrain-check-") as tmp:
        out = os.path.join(tmp, "report.json")
        cmd = [sys.executable, "-m", "vdatrain", "check", name, "--iters", str(iters), "--json", out,
               *(a for s in sets for a in ("--set", s)), *(["--narrow"] if narrow else []),
               *(["--val-images", str(val_images)] if val_images else [])]
        env = {**os.environ, **{k: str(threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if os.path.exists(out):
            return json.loads(open(out).read())[0]
    tail = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode} (killed: out of memory?)"])[-1]
    return {"recipe": name, "ok": False, "step": "process", "error": tail}


def run_checks(jobs: list[tuple[str, str, list[str]]], iters: int, narrow: bool, val_images, parallel: int,
               threads: int, say) -> list[dict]:
    """Each (recipe, label, overrides) of `jobs` checked in its own process, `parallel` at a time with `threads`
    CPU threads each (on a CPU, one thread per process and two processes ran 2.6-3x faster than two threads
    each on a shared machine); the reports in the order of `jobs`. `say(line)`: a progress line per check."""
    from concurrent.futures import ThreadPoolExecutor

    def one(k: int, job) -> dict:
        name, label, sets = job
        say(f"check {k}/{len(jobs)}: {name} {label}".rstrip())
        tic = time.perf_counter()
        report = _check_in_subprocess(name, sets, iters, narrow, val_images, threads) | ({"mode": label} if label else {})
        say(f"check {k}/{len(jobs)}: {name} {label} {'ok' if report['ok'] else 'FAILED'} "
            f"in {time.perf_counter() - tic:.0f} s".replace("  ", " "))
        return report

    with ThreadPoolExecutor(parallel) as pool:
        return list(pool.map(one, range(1, len(jobs) + 1), jobs))
