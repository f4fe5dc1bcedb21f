"""Strong augmentation's Gaussian blur: torchvision's 2-D kernel vs our two 1-D passes, side by side in one run.

    python bench/augment.py [--repeat 3]

For each crop side (the paper's 512, 720 and 1024, kernel rounded down as the reference does), one RGB
image blurred with sigma 1.15 by both, the best of `--repeat` calls each; prints seconds per image,
the speed-up and the largest difference between the two results.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
import torchvision.transforms.v2.functional as TF

from vdatrain.adapt.augment import blur_kernel, gaussian_blur


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    print(f"{platform.processor() or 'cpu'}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print("| side | kernel | torchvision 2-D s | two 1-D passes s | speed-up | max abs difference |")
    print("|---:|---:|---:|---:|---:|---:|")
    for side in (512, 720, 1024):
        x = torch.rand(3, side, side)
        k = blur_kernel(side)
        ref = TF.gaussian_blur(x, [k, k], [1.15, 1.15])
        ours = gaussian_blur(x, (k, k), 1.15)
        t2d = best(lambda: TF.gaussian_blur(x, [k, k], [1.15, 1.15]), a.repeat)
        t1d = best(lambda: gaussian_blur(x, (k, k), 1.15), a.repeat)
        print(f"| {side} | {k} | {t2d:.3f} | {t1d:.3f} | {t2d / t1d:.1f}x | {(ref - ours).abs().max().item():.1e} |")


if __name__ == "__main__":
    main()
