"""A trained model applied to footage without labels: video files, folders of frames, single images.

    open_footage(path, fps) -> Footage      what the input is, its frame rate and size; frames() streams them
    predict_footage(model, footage, out, ...) -> dict   the record written as `out/prediction.json`

Per input, in its own folder:
    labels/000000.png ...   trainIds (uint8, one per frame)
    colour/000000.png ...   the Cityscapes palette, and legend.png naming each colour
    overlay.mp4             frame and colour blended half and half, H.264, the input's frame rate and size
    prediction.json         written last (atomically): frames, fps, size, the share of each class, the label-free
                            consistency score, seconds; its presence means the input is done (a rerun skips it)

Frames stream through: one decoded frame, its prediction and (for the consistency score and two-frame models)
the previous frames a pair needs are all that is held. Frames are numbered in decode order (0, 1, ...).

The label-free score is the paper's PL-PredConsis: the mIoU between the prediction of frame t and the prediction
of frame t-1 warped to t through DIS optical flow (t -> t-1), on the pixels whose flow is valid (in frame and
forward-backward consistent), accumulated over the whole input. It measures agreement over time, not
correctness: a model that predicts one class everywhere scores 100. `class_shares` beside it shows such a
collapse. Two-frame models (ACCEL) take their partner frame and its DIS flow the same way; the first frames,
which have no partner yet, are predicted single-frame and listed.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from flowprep.errors import FlowprepError
from flowprep.manifest import load_classes
from flowprep.store import pair_offsets
from flowprep.store.layout import IGNORE_LABEL
from flowprep.viz import colourise, write_picture
from vdatrain.evaluation.predict import image_tensor
from vdatrain.metrics.miou import confusion, miou
from vdatrain.models.contract import Partner
from vdatrain.models.warp import warp

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


class FootageError(FlowprepError):
    """An input that cannot be read; the message names it."""


@dataclass
class Footage:
    """kind: "video", "frames" (a folder of images, in name order) or "image"; size (h, w); count: frames (a
    video's: its header's claim, 0 when it has none; the record counts the frames decoded)."""
    path: Path
    kind: str
    fps: float
    size: tuple[int, int]
    count: int
    files: list[Path] = field(default_factory=list)

    def frames(self):
        """(H, W, 3) uint8 RGB frames in decode (or name) order."""
        if self.kind != "video":
            for f in self.files:
                yield _read_image(f, self.size)
            return
        import av

        try:
            with av.open(str(self.path)) as container:
                for frame in container.decode(video=0):
                    yield frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError as e:
            raise FootageError(f"{self.path}: decoding failed ({e})") from None


def _read_image(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if img is None:
        raise FootageError(f"{path}: not an image OpenCV can read")
    if size is not None and img.shape[:2] != tuple(size):
        raise FootageError(f"{path}: {img.shape[1]}x{img.shape[0]}, the folder's first frame is {size[1]}x{size[0]}")
    return np.ascontiguousarray(img[..., ::-1])


def open_footage(path, fps: float = 10.0) -> Footage:
    """A video (any container PyAV reads), a folder of images or one image; `fps` for frames and images."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise FootageError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        h, w = _read_image(files[0]).shape[:2]
        return Footage(path, "frames", fps, (h, w), len(files), files)
    if not path.is_file():
        raise FootageError(f"{path}: no such file or folder")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        h, w = _read_image(path).shape[:2]
        return Footage(path, "image", fps, (h, w), 1, [path])
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise FootageError(f"{path}: holds no video stream")
            stream = container.streams.video[0]
            rate = float(stream.average_rate or stream.guessed_rate or 0)
            # the header's count for the progress bar (0: unknown); the frames themselves are counted as decoded
            count = int(stream.frames or 0)
            first = next(container.decode(video=0), None)  # one frame decodes: the file is a video
            h, w = stream.codec_context.height, stream.codec_context.width
    except av.error.FFmpegError as e:
        raise FootageError(f"{path}: not a video PyAV can read ({e})") from None
    if first is None:
        raise FootageError(f"{path}: no frame decodes")
    return Footage(path, "video", rate or fps, (h, w), count)


class OverlayVideo:
    """H.264 at the input's frame rate and size (4:2:0 where the sides are even, else 4:4:4)."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]):
        import av
        from fractions import Fraction

        self.container = av.open(str(path), "w")
        self.stream = self.container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        self.stream.height, self.stream.width = size
        self.stream.pix_fmt = "yuv420p" if size[0] % 2 == 0 and size[1] % 2 == 0 else "yuv444p"

    def write(self, rgb: np.ndarray) -> None:
        import av

        for packet in self.stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
            self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()


def predconsis_confusion(pred_t: torch.Tensor, pred_before: torch.Tensor, flow: torch.Tensor, valid: torch.Tensor,
                         num_classes: int) -> torch.Tensor:
    """The (C, C) confusion of PL-PredConsis for one pair (`vdatrain.metrics.temporal`): pred_t, pred_before (H, W)
    int64 of frames t and t-1, flow (2, H, W) t -> t-1 in pixels, valid (H, W) bool. Summed over an input,
    `vdatrain.metrics.miou.miou` of it is the score."""
    warped, ok = warp(pred_before[None, None].float(), flow[None], valid[None], mode="nearest")
    return confusion(warped[0, 0].long(), torch.where(ok[0], pred_t, torch.full_like(pred_t, IGNORE_LABEL)),
                     num_classes)


def legend(num_classes: int) -> np.ndarray:
    """(rows * 20, 220, 3) uint8: each trainId's colour beside its name."""
    import cv2

    names = load_classes().names[:num_classes]
    out = np.full((20 * len(names), 220, 3), 255, np.uint8)
    for i, name in enumerate(names):
        out[20 * i + 2:20 * i + 18, 2:30] = colourise(np.array([[i]], np.uint8))[0, 0]
        cv2.putText(out, name, (36, 20 * i + 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def _write_json(path: Path, record: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, path)


def read_ahead(frames, depth: int = 4):
    """`frames` decoded on a thread, up to `depth` ahead of the consumer (decoding overlaps the model); errors
    are raised where the frame would have been."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()

    def fill():
        try:
            for f in frames:
                q.put(f)
        except BaseException as e:  # handed to the consumer
            q.put(e)
        q.put(done)

    threading.Thread(target=fill, daemon=True).start()
    while (item := q.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item


class Outputs:
    """The per-frame files of one input, written on a thread of their own in frame order (PNG and H.264 encoding
    overlap the next frame's prediction): labels/, colour/ and the overlay video."""

    def __init__(self, out: Path, footage: Footage, num_classes: int):
        self.out = out
        for sub in ("labels", "colour"):
            (out / sub).mkdir(parents=True, exist_ok=True)
        write_picture(out / "colour" / "legend.png", legend(num_classes))
        self.overlay = OverlayVideo(out / "overlay.mp4", footage.fps, footage.size) if footage.kind != "image" else None
        self.pool = ThreadPoolExecutor(1)
        self.pending: deque = deque()

    def _write(self, t: int, rgb: np.ndarray, labels: np.ndarray) -> None:
        write_picture(self.out / "labels" / f"{t:06d}.png", labels)
        colour = colourise(labels)
        write_picture(self.out / "colour" / f"{t:06d}.png", colour)
        if self.overlay is not None:
            self.overlay.write(((rgb.astype(np.uint16) + colour) // 2).astype(np.uint8))

    def add(self, t: int, rgb: np.ndarray, labels: np.ndarray) -> None:
        self.pending.append(self.pool.submit(self._write, t, rgb, labels))
        while len(self.pending) > 4:  # bounded: a slow disk holds the prediction back, not the memory
            self.pending.popleft().result()

    def close(self) -> None:
        while self.pending:
            self.pending.popleft().result()
        self.pool.shutdown()
        if self.overlay is not None:
            self.overlay.close()


def predict_footage(model, footage: Footage, out: Path, window, stride, device, bf16: bool = False,
                    window_batch: int = 1, progress=None, info: dict | None = None, flow_engine=None) -> dict:
    """Predict every frame of `footage` into `out` (module docstring); returns the record it writes.
    `flow_engine`: a flowprep engine (`flowprep.flow.engines.make_engine`; default DIS medium on the CPU)."""
    from flowprep.flow.engines.dis import DisEngine

    flow_engine = flow_engine or DisEngine("medium")
    num_classes = model.num_classes
    outputs = Outputs(out, footage, num_classes)
    k = -pair_offsets(model.pair)[1] if model.pair is not None else 0  # a two-frame model's frame distance
    conf, counts = torch.zeros(num_classes, num_classes, dtype=torch.int64), np.zeros(num_classes, np.int64)
    before: deque = deque(maxlen=max(k, 1))  # the last frames: (rgb, prediction)
    single_frame, frames, tic = [], 0, time.perf_counter()
    for t, rgb in enumerate(read_ahead(footage.frames())):
        flows = {}

        def flow_to(d):  # flow t -> t-d and its validity, once per frame and distance
            if d not in flows:
                f, v = flow_engine.flow_and_validity(rgb[None], before[-d][0][None])
                flows[d] = (torch.from_numpy(f[0]).permute(2, 0, 1).to(device), torch.from_numpy(v[0]).to(device))
            return flows[d]

        partner = None
        if k and len(before) >= k:
            partner = Partner(image_tensor(before[-k][0], device), *(x[None] for x in flow_to(k)))
        elif k:
            single_frame.append(t)
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model.predict(image_tensor(rgb, device), window, stride, partner, batch=window_batch)
        pred = logits.float().argmax(1)[0]
        counts += np.bincount(pred.flatten().cpu().numpy(), minlength=num_classes)[:num_classes]
        if before:
            conf += predconsis_confusion(pred, before[-1][1], *flow_to(1), num_classes).cpu()
        outputs.add(t, rgb, pred.to(torch.uint8).cpu().numpy())
        before.append((rgb, pred))
        frames = t + 1
        if progress is not None:
            progress.update()
    outputs.close()
    seconds = time.perf_counter() - tic
    names = load_classes().names[:num_classes]
    record = {**(info or {}), "input": str(footage.path), "kind": footage.kind, "frames": frames,
              "fps": footage.fps, "size": list(footage.size),
              "class_shares": {n: round(100 * float(c) / max(int(counts.sum()), 1), 3) for n, c in zip(names, counts)},
              "pl_predconsis_miou": miou(conf.numpy(), list(range(num_classes))) if frames > 1 else None,
              "consistency_pairs": frames - 1, "flow": f"{flow_engine.name}, t -> t-1, forward-backward validity",
              "single_frame": single_frame, "seconds": round(seconds, 3),
              "frames_per_second": round(frames / seconds, 3) if seconds else None}
    _write_json(out / "prediction.json", record)
    return record
