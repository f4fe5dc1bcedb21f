"""Does adaptation beat source-only on the synthetic shift? Both, over several seeds, side by side.

    python bench/adaptation.py [--seeds 1,2,3] [--adapt demo-hrda-mic] [--runs bench-runs/adaptation]
                               [--set KEY=VALUE ...]

For each seed: `vdatrain fit demo` (source-only on the synthetic VIPER replica),
then `vdatrain fit <adapt>` starting from that model (`model.init`), each
evaluated on the synthetic Cityscapes-Seq val set (VIPER's 15 classes). Prints
mIoU per seed, the means, and the gain. Needs the demo stores (`make demo`).
`--set` passes overrides to the adaptation recipe (e.g. model.hrda=null).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

VDATRAIN = [sys.executable, "-m", "vdatrain"]


def run(*argv) -> None:
    proc = subprocess.run([*VDATRAIN, *map(str, argv)], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"vdatrain {' '.join(map(str, argv))} failed:\n{proc.stderr[-3000:]}")


def miou(eval_dir: Path) -> float:
    return json.loads((eval_dir / "results.json").read_text())["miou"]["standard"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--source", default="demo", help="source-only recipe")
    ap.add_argument("--adapt", default="demo-hrda-mic", help="adaptation recipe (started from the source model)")
    ap.add_argument("--runs", default="bench-runs/adaptation", type=Path, help="run directories go here")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="override for the adaptation recipe")
    a = ap.parse_args()
    rows = []
    for seed in map(int, a.seeds.split(",")):
        tic = time.perf_counter()
        src, ada = a.runs / f"{a.source}-seed{seed}", a.runs / f"{a.adapt}-seed{seed}"
        run("fit", a.source, "--run-dir", src, "--set", f"train.seed={seed}")
        run("eval", a.source, "--ckpt", src / "checkpoint.pt", "--pictures", "0", "--out", src / "eval")
        sets = [x for o in a.overrides for x in ("--set", o)]
        run("fit", a.adapt, "--run-dir", ada, "--set", f"train.seed={seed}", "--set", f"model.init={src / 'checkpoint.pt'}",
            *sets)
        run("eval", a.adapt, "--ckpt", ada / "checkpoint.pt", "--pictures", "0", "--out", ada / "eval", *sets)
        rows.append((seed, miou(src / "eval"), miou(ada / "eval"), time.perf_counter() - tic))
        print(f"seed {seed}: source-only {rows[-1][1]:.1f}, {a.adapt} {rows[-1][2]:.1f} ({rows[-1][3]:.0f} s)", flush=True)
    print(f"\n| seed | {a.source} (source-only) | {a.adapt} | gain |")
    print("|---|---:|---:|---:|")
    for seed, s, d, _ in rows:
        print(f"| {seed} | {s:.1f} | {d:.1f} | {d - s:+.1f} |")
    ms, md = (sum(r[i] for r in rows) / len(rows) for i in (1, 2))
    print(f"| mean | {ms:.1f} | {md:.1f} | {md - ms:+.1f} |")
    if a.overrides:
        print(f"\noverrides: {' '.join(a.overrides)}")


if __name__ == "__main__":
    main()
