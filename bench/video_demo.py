"""The Video-DAS techniques on the synthetic shift (VIPER -> Cityscapes-Seq replicas), with DIS flow and
with the exact flow of the replicas' truth files, gathered into one table by `vdatrain report`.

Needs `make demo` first (stores with DIS flow, the source-only run and the HRDA+MIC run). For the
exact-flow variants, the three stores are ingested again and the truth flows (`_truth/`, t -> t-1
and t-1 -> t-2 with their occlusion masks) are imported as KITTI PNGs with `flowprep flow-import`.
Every variant starts from the demo's source-only weights with the same seed; finished runs are
skipped, so an interrupted call continues.

    python bench/video_demo.py [--demo ~/vdatrain-data/demo] [--only NAME,...]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from flowprep.flow.formats import write_kitti
from vdatrain.recipe.load import data_home

BIN = Path(sys.executable).parent
STORES = ("viper_train", "cityscapes-seq_train", "cityscapes-seq_val")
# (run name, recipe, flow source); the order is the table's
RUNS = [
    ("demo-hrda", "demo-hrda", "dis"),
    ("demo-hrda-nomrf", "demo-hrda-nomrf", "dis"),
    ("demo-hrda-mic-consistency", "demo-hrda-mic-consistency", "dis"),
    ("demo-hrda-mic-consistency-exact", "demo-hrda-mic-consistency", "exact"),
    ("demo-hrda-mic-accel", "demo-hrda-mic-accel", "dis"),
    ("demo-hrda-mic-accel-exact", "demo-hrda-mic-accel", "exact"),
    ("demo-hrda-mic-mom", "demo-hrda-mic-mom", "dis"),
    ("demo-hrda-mic-video-disc", "demo-hrda-mic-video-disc", "dis"),
]


def run(*cmd) -> None:
    print("+", " ".join(map(str, cmd)), flush=True)
    subprocess.run([str(c) for c in cmd], check=True)


def exact_stores(demo: Path) -> Path:
    """The demo stores again, with the truth flows (bwd_1, bwd_1_at_m1) instead of DIS."""
    out = demo / "stores-exact"
    datasets = {"viper_train": ("viper", "train"), "cityscapes-seq_train": ("cityscapes-seq", "train"),
                "cityscapes-seq_val": ("cityscapes-seq", "val")}
    for name, (dataset, split) in datasets.items():
        store = out / f"{name}.zarr"
        run(BIN / "flowprep", "ingest", dataset, "--root", demo / "raw", "--split", split, "--out", store)
        truth = demo / "raw" / "_truth" / dataset / split
        for pair, (a, b) in {"bwd:1": (0, -1), "bwd:1@-1": (-1, -2)}.items():
            with tempfile.TemporaryDirectory() as tmp:
                for f in sorted(truth.glob("*.npz")):
                    z = np.load(f)
                    write_kitti(Path(tmp) / f"{f.stem}.png", z[f"flow_{a}_{b}"], ~z[f"occ_{a}_{b}"])
                run(BIN / "flowprep", "flow-import", store, "--pairs", pair, "--dir", tmp)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo", type=Path, default=data_home() / "demo",
                    help="the folder `make demo` wrote (default: the data home's demo/)")
    ap.add_argument("--only", default="", help="comma-separated run names (default: all)")
    args = ap.parse_args()
    demo, runs_dir = args.demo, args.demo / "runs"
    init = runs_dir / "demo" / "checkpoint.pt"
    if not init.is_file():
        sys.exit(f"{init}: missing; run `make demo` first")
    only = set(filter(None, args.only.split(",")))
    todo = [r for r in RUNS if not only or r[0] in only]
    roots = {"dis": demo / "stores"}
    if any(flow == "exact" for *_, flow in todo):
        roots["exact"] = demo / "stores-exact"
        if not (roots["exact"] / "cityscapes-seq_val.zarr").exists():
            shutil.rmtree(roots["exact"], ignore_errors=True)
            exact_stores(demo)
    for name, recipe, flow in todo:
        run_dir = runs_dir / name
        sets = ["--set", f"data_root={roots[flow]}", "--set", f"model.init={init}", "--set", f"label={name}"]
        if not (run_dir / "eval" / "results.json").is_file():
            run(BIN / "vdatrain", "fit", recipe, *sets, "--run-dir", run_dir)
            run(BIN / "vdatrain", "eval", recipe, *sets, "--ckpt", run_dir / "checkpoint.pt", "--out", run_dir / "eval",
                "--pictures", "0")
    done = [runs_dir / n for n in ("demo", "demo-hrda-mic", *(r[0] for r in RUNS))
            if (runs_dir / n / "eval" / "results.json").is_file()]
    run(BIN / "vdatrain", "report", *done, "--out", demo / "video-report")


if __name__ == "__main__":
    main()
