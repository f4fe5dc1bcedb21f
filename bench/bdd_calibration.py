"""Calibrate BDDVid matching: scores and contrast of true matches, other-scene videos, re-encoded videos and
videos cut before the true frame, on a replica written by `flowprep synth`.

    python bench/bdd_calibration.py --raw ~/vdatrain-data/demo/raw [--workdir bench-data/bdd-calibration]

For every BDD10k image of an "ok" id: its own video (true), every other ok id's video (other scene), its video
re-encoded at crf 28 (re-encoded), and its video cut 6 frames before the true frame (cut). Prints, per case,
the full-resolution score (grey levels) and contrast (1 - best / median quarter-resolution score over the
window) ranges with no threshold applied, then the verdicts under the defaults.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import av
import cv2
import numpy as np

from flowprep.errors import Unusable
from flowprep.ingest.bddvid import DEFAULT_MAX_ERROR, DEFAULT_MIN_CONTRAST, DEFAULT_STILL_ERROR, match_video


def reencode(src: Path, dst: Path, keep: slice | None = None, crf: str = "28") -> Path:
    if dst.exists():
        return dst
    with av.open(str(src)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    frames = frames[keep] if keep else frames
    dst.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(dst), "w", format="mov") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt, stream.options = "yuv420p", {"crf": crf, "threads": "1"}
        for f in frames:
            for p in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(p)
        for p in stream.encode():
            out.mux(p)
    return dst


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--raw", required=True, type=Path, help="a replica written by `flowprep synth`")
    ap.add_argument("--workdir", type=Path, default=Path("bench-data/bdd-calibration"))
    a = ap.parse_args()
    truth = json.loads((a.raw / "_truth/bdd/matches.json").read_text())
    ok = sorted(v for v, info in truth.items() if info["status"] == "ok")
    video = {v: next(a.raw.glob(f"bdd100k/videos/**/{v}.mov")) for v in ok}
    rows: dict[str, list] = {"true": [], "other scene": [], "re-encoded": [], "cut before t": []}
    for v in ok:
        image = cv2.imread(str(a.raw / f"bdd100k/images/10k/{truth[v]['split10k']}/{v}.jpg"))[..., ::-1]
        cases = [("true", video[v]), ("re-encoded", reencode(video[v], a.workdir / f"{v}-crf28.mov")),
                 ("cut before t", reencode(video[v], a.workdir / f"{v}-cut.mov", slice(0, truth[v]["frame"] - 6), "18")),
                 *(("other scene", video[o]) for o in ok if o != v)]
        for case, path in cases:
            try:  # no thresholds: the raw figures; then the verdict under the defaults
                m = match_video(path, image, max_error=1e9, min_contrast=0.0)
                raw = (m.score, m.contrast, m.frame == truth[v]["frame"])
            except Unusable as e:
                raw = (np.nan, np.nan, e.kind)
            try:
                right = match_video(path, image).frame == truth[v]["frame"]
                verdict = "matched, right frame" if right else "matched, WRONG frame"
            except Unusable as e:
                verdict = e.kind
            rows[case].append((*raw, verdict))
    print(f"defaults: max_error {DEFAULT_MAX_ERROR:g}, min_contrast {DEFAULT_MIN_CONTRAST:g}, "
          f"still_error {DEFAULT_STILL_ERROR:g}; replica {a.raw}")
    print("| case | n | score (grey levels) | contrast | verdicts under the defaults |")
    print("|---|---:|---|---|---|")
    for case, r in rows.items():
        scores = [x[0] for x in r if not np.isnan(x[0])]
        contrast = [x[1] for x in r if not np.isnan(x[1])]
        span = (lambda xs, f: f"{min(xs):{f}} - {max(xs):{f}}" if xs else "n/a")
        verdicts: dict[str, int] = {}
        for x in r:
            verdicts[x[3]] = verdicts.get(x[3], 0) + 1
        print(f"| {case} | {len(r)} | {span(scores, '.1f')} | {span(contrast, '.2f')} | "
              + ", ".join(f"{k} {n}" for k, n in verdicts.items()) + " |")


if __name__ == "__main__":
    main()
