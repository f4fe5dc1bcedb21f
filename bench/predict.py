"""`vdatrain predict`'s frames per second against the model's forward alone on the same frames, side by side.

    python bench/predict.py [--sizes 1280x720,2048x1024] [--frames 6] [--model deeplabv2_r18] [--device cpu]
                            [--workdir DIR]

For each size a test video is written (H.264, a moving pattern), then:
- forward only: the frames decoded beforehand, `model.predict` with the recipes' windows at that size (BDD's
  720/360 with 360/180 detail windows at 1280x720, Cityscapes' 1024/512 with 512/256 at 2048x1024) and the
  argmax: the limit;
- predict: `predict_footage` end to end (decoding, DIS flow t -> t-1 with forward-backward validity for the
  consistency score, the PNGs and the H.264 overlay, all on the same machine).
The goal is predict at 0.9x the forward-only rate or better: decoding and writing overlap the model on threads;
the flow is the part that does not (it needs the frame the model has just seen).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vdatrain.evaluation.footage import OverlayVideo, open_footage, predict_footage  # noqa: E402
from vdatrain.evaluation.predict import image_tensor  # noqa: E402
from vdatrain.models import build_model  # noqa: E402
from vdatrain.recipe.schema import HRDASpec  # noqa: E402

GEOMETRY = {(720, 1280): ((720, 720), (360, 360), (360, 360), (180, 180)),
            (1024, 2048): ((1024, 1024), (512, 512), (512, 512), (256, 256))}


def write_video(path: Path, size: tuple[int, int], n: int) -> None:
    h, w = size
    video = OverlayVideo(path, 30.0, size)
    g = np.random.default_rng(0)
    base = g.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    for t in range(n):
        video.write(np.ascontiguousarray(np.roll(base, 4 * t, axis=1)))
    video.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1280x720,2048x1024", help="WxH, comma-separated (1280x720, 2048x1024)")
    ap.add_argument("--frames", type=int, default=6, help="frames per size")
    ap.add_argument("--model", default="deeplabv2_r18", help="a registered single-frame model, under HRDA")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--workdir", type=Path, default=None, help="where the videos and outputs go (default: a temp dir)")
    a = ap.parse_args()
    device = torch.device(a.device)
    bf16 = device.type == "cuda"
    work = a.workdir or Path(tempfile.mkdtemp(prefix="bench-predict-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for spec in a.sizes.split(","):
        w, h = (int(v) for v in spec.lower().split("x"))
        if (h, w) not in GEOMETRY:
            ap.error(f"--sizes: {spec} (choose from 1280x720, 2048x1024)")
        window, stride, detail, detail_stride = GEOMETRY[(h, w)]
        torch.manual_seed(0)
        model = build_model(a.model, 19, HRDASpec(detail_crop=detail, detail_stride=detail_stride)).to(device).eval()
        video = work / f"{w}x{h}.mp4"
        write_video(video, (h, w), a.frames)
        footage = open_footage(video)
        frames = list(footage.frames())
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            model.predict(image_tensor(frames[0], device), window, stride, batch=4)  # warm-up
            tic = time.perf_counter()
            for rgb in frames:
                model.predict(image_tensor(rgb, device), window, stride, batch=4).argmax(1).cpu()
            forward = time.perf_counter() - tic
        record = predict_footage(model, footage, work / f"out-{w}x{h}", window, stride, device, bf16, 4)
        fps_forward, fps_predict = len(frames) / forward, record["frames_per_second"]
        rows.append(f"| {w}x{h} | {a.model} HRDA, {window[0]}/{stride[0]} windows | {len(frames)} | "
                    f"{fps_forward:.3f} | {fps_predict:.3f} | {fps_predict / fps_forward:.2f}x |")
        print(rows[-1], file=sys.stderr, flush=True)
    print(f"`vdatrain predict` against the forward alone, {device.type}{' bf16' if bf16 else ''}\n")
    print("| size | model | frames | forward only (frames/s) | predict (frames/s) | predict / forward |")
    print("|---|---|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
