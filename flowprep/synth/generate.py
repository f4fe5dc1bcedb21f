"""`flowprep synth`: plan the jobs of each replica for a scale and seed, run them, write the summary.

Scales: `tiny` (tests, seconds), `demo` (training demo, under a minute on 2 cores) and `full`
(the real datasets' resolutions, a handful of samples each, for checking paper recipes at their
true geometry: `vdatrain check`, `make paper-check`; a few minutes on 2 cores, most of it the
Cityscapes-Seq frames at 2048x1024 and the moving end of the two BDD100K videos). Everything is a function of (scale, seed): the same
arguments give the same files.
"""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import numpy as np

from flowprep.errors import FlowprepError
from flowprep.progress import Progress
from flowprep.synth.datasets import FPS, RESOLUTIONS, Job, _seed, run_job

DATASETS = ("viper", "synthia-seq", "cityscapes-seq", "bdd")

# Per scale: Cityscapes snippets (split, city, seq, t), VIPER sequences (split, seq, last frame),
# Synthia frame count, BDD10k ids per split; `span` (optional): render only the frames t+span[0] ..
# t+span[1] around each labelled frame t of a Cityscapes snippet or VIPER sequence (the frames the
# recipes and flow pairs read), instead of the whole snippet or sequence: at full resolution a
# Cityscapes frame takes about 3.5 s to render. `bdd_moving_from` (optional): a BDD video shows its
# first moving frame until then (a car waiting), so the frames nothing reads are not rendered.
PLAN = {
    "tiny": {
        "cityscapes-seq": [("train", "aachen", 0, 19), ("train", "aachen", 1, 19),
                           ("val", "frankfurt", 0, 294), ("val", "lindau", 0, 19)],
        "viper": [("train", 1, 29), ("train", 2, 29), ("val", 1, 22)],
        "synthia-seq": 10,
        "bdd": {"train": ["ok", "ok", "no_video", "truncated", "corrupt"], "val": ["ok"]},
    },
    "demo": {
        "cityscapes-seq": [("train", c, i, 19) for c in ("aachen", "bochum", "bremen") for i in range(4)]
        + [("val", "frankfurt", 0, 294), ("val", "frankfurt", 1, 1059), ("val", "lindau", 0, 19),
           ("val", "lindau", 1, 19), ("val", "munster", 0, 19), ("val", "munster", 1, 19)],
        "viper": [("train", s, 82) for s in range(1, 5)] + [("val", s, 42) for s in range(1, 3)],
        "synthia-seq": 120,
        "bdd": {"train": ["ok", "ok", "ok", "ok", "no_video", "truncated", "corrupt"], "val": ["ok", "ok", "ok"]},
    },
    "full": {
        "cityscapes-seq": [("train", "aachen", 0, 19), ("train", "bochum", 1, 19), ("train", "bremen", 2, 19),
                           ("val", "frankfurt", 0, 294), ("val", "lindau", 0, 19)],
        "viper": [("train", 1, 22), ("train", 2, 12), ("val", 1, 12)],
        "synthia-seq": 6,
        "bdd": {"train": ["ok"], "val": ["ok"]},  # the broken cases are the smaller scales' job
        "span": (-2, 1),
        # the car stands still until frame 268 (one picture, repeated), then drives: the matcher decodes from the
        # keyframe before its window (276 .. 330), so only the frames from there on need rendering
        "bdd_moving_from": 268,
    },
}
BDD_VIDEO_END = 336  # frames 0..335: past the search window's end (330)
BDD_DELTAS = (0, 1, 0, -2, 3, 0, -1)  # the labelled image is usually video frame 307, not always


def plan_jobs(scale: str, seed: int, datasets) -> list[Job]:
    if scale not in PLAN:
        raise FlowprepError(f"unknown scale {scale!r} (choose {', '.join(PLAN)})")
    plan, jobs = PLAN[scale], []
    span = plan.get("span")

    def around(frames, labelled):  # the frames of `frames` that the plan's span keeps
        return frames if span is None else [f for f in frames if any(t + span[0] <= f <= t + span[1] for t in labelled)]

    if "cityscapes-seq" in datasets:
        for split, city, num, t in plan["cityscapes-seq"]:
            jobs.append(Job("cityscapes-seq", split, f"{city}_{num:06d}", around(list(range(t - 19, t + 11)), [t]), [t],
                            _seed(seed, "cs", split, city, num), {"city": city, "seq": num,
                                                                   "ids": {t: f"{city}_{num:06d}_{t:06d}"}}))
    if "viper" in datasets:
        for split, num, last in plan["viper"]:
            labelled = list(range(10, last - 1, 10))
            jobs.append(Job("viper", split, f"{num:03d}", around(list(range(0, last + 1)), labelled), labelled,
                            _seed(seed, "viper", split, num), {"ids": {t: f"{num:03d}_{t:05d}" for t in labelled}}))
    if "synthia-seq" in datasets:
        n = plan["synthia-seq"]
        jobs.append(Job("synthia-seq", "train", "SEQS-04-DAWN", list(range(n)), list(range(2, n)),
                        _seed(seed, "synthia"), {"ids": {t: f"{t:06d}" for t in range(2, n)}}))
    if "bdd" in datasets:
        rng = np.random.default_rng(_seed(seed, "bdd-ids"))
        k = 0
        for split, statuses in plan["bdd"].items():
            for status in statuses:
                vid = f"{rng.integers(16 ** 8):08x}-{rng.integers(16 ** 8):08x}"
                n = 307 + BDD_DELTAS[k % len(BDD_DELTAS)]
                # Real videos run 40 s (1200 frames); ours stop soon after the matcher's search window (280..330).
                end = max(n + 1 + int(rng.integers(8, 24)), BDD_VIDEO_END)
                frames = list(range(0, end)) if status in ("ok", "truncated") else [n]
                extra = {"status": status, "video_split": ("train", "val")[k % 2],
                         "subdir": f"{10 + k}/" if k % 3 == 1 else "", "ids": {n: vid},
                         "moving_from": plan.get("bdd_moving_from", 0)}
                jobs.append(Job("bdd", split, vid, frames, [n], _seed(seed, "bdd", vid), extra))
                k += 1
    return sorted(jobs, key=lambda j: -len(j.frames) * (4 if j.dataset == "bdd" else 1))  # long jobs first


def _run(args):
    job, root, scale = args
    return job.dataset, job.split, job.name, run_job(job, Path(root), scale)


def generate(out, *, scale: str = "tiny", seed: int = 0, datasets=DATASETS, workers: int = 1,
             progress: bool = True) -> dict:
    """Write the replicas under `out`; returns the summary also saved as `_truth/synth.json`."""
    unknown = set(datasets) - set(DATASETS)
    if unknown:
        raise FlowprepError(f"unknown dataset(s) {sorted(unknown)} (choose from {', '.join(DATASETS)})")
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    jobs = plan_jobs(scale, seed, datasets)
    results = []
    tasks = [(job, str(root), scale) for job in jobs]
    bar = Progress(sum(len(j.frames) for j in jobs), f"synth {scale}", "frame", enabled=progress)
    frames_of = {(j.dataset, j.split, j.name): len(j.frames) for j in jobs}
    if workers > 1:
        with mp.get_context("spawn").Pool(workers) as pool:
            for r in pool.imap_unordered(_run, tasks):
                results.append(r)
                bar.update(frames_of[r[:3]])
    else:
        for task in tasks:
            results.append(_run(task))
            bar.update(frames_of[results[-1][:3]])
    bar.close()

    summary = {
        "scale": scale, "seed": seed, "datasets": sorted(datasets),
        "resolution": {d: list(RESOLUTIONS[scale][d]) for d in datasets},
        "fps": {d: FPS[d] for d in datasets},
        "samples": {},
    }
    for dataset, split, name, info in sorted(results, key=lambda r: r[:3]):
        summary["samples"].setdefault(dataset, {}).setdefault(split, [])
        job = next(j for j in jobs if (j.dataset, j.split, j.name) == (dataset, split, name))
        summary["samples"][dataset][split] += [job.extra["ids"][t] for t in job.labelled]
    if "bdd" in datasets:
        matches = {info["id"]: {k: v for k, v in info.items() if k != "id"} for d, _, _, info in results if d == "bdd"}
        (root / "_truth" / "bdd").mkdir(parents=True, exist_ok=True)
        (root / "_truth" / "bdd" / "matches.json").write_text(json.dumps(dict(sorted(matches.items())), indent=2))
    (root / "_truth").mkdir(exist_ok=True)
    (root / "_truth" / "synth.json").write_text(json.dumps(summary, indent=2))
    return summary
