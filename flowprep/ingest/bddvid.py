"""BDDVid: match each labelled BDD10k image to the frame of its BDD100K video it was cut from.

For each BDD10k id with a label: find `{id}.mov` anywhere under the BDD100K
videos folder; seek to the keyframe before the search window (never decode a
40 s video from its start); decode the window; score every frame against the
BDD10k image (mean absolute grey-level difference at quarter resolution, under
each rotation whose shape fits, so orientation is checked, not assumed), then
rescore the best frame's neighbours at full resolution; keep the best frame n if
its score is under the threshold; store the video frames
at n + offsets for training and the original BDD10k image for evaluation (the
labels match it exactly), with the match record (n, score, margin, rotation, contrast).

Ids without a video, with an unreadable or truncated video, or without a
well-enough matching frame are excluded with a reason.

Split: the paper's BDDVid takes all ids from BDD10k *train* labels and splits
them about 2999 / 430. Without a split file, an id goes to val when
crc32(id) % 8 == 0 (1/8 = 12.5%, the paper's 430 / 3429), else to train.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from flowprep.errors import FlowprepError, Unusable
from flowprep.ingest.frames import dataset_resolution, read_rgb
from flowprep.ingest.runner import Loaded, Plan
from flowprep.labels import read_train_ids
from flowprep.manifest import load_classes, load_manifest
from flowprep.store import StoreSpec
from flowprep.store.layout import check_name

DEFAULT_SEARCH = (280, 330)
EXPECTED_FRAME = 307  # the reference's t; the BDD10k image is usually this frame, at about 10 s
NARROW = 10  # first scan: EXPECTED_FRAME +- NARROW
DEFAULT_MAX_ERROR = 12.0  # grey levels, mean absolute difference at full resolution
# Distinctiveness (calibrated on the replicas, docs/ingest.md): the best frame's quarter-resolution score
# must lie well below the window's median (contrast = 1 - best / median), unless the score is at the noise
# floor of a re-encoded frame (a car standing still matches every frame of its window equally well).
DEFAULT_MIN_CONTRAST = 0.5
DEFAULT_STILL_ERROR = 4.0
MATCH_FIELDS = ["video_frame", "score", "margin", "rotation_deg", "contrast"]


def split_of(video_id: str) -> str:
    return "val" if zlib.crc32(video_id.encode()) % 8 == 0 else "train"


def _luma(frame) -> np.ndarray:
    """(H, W) float32 grey levels 0..255 of a decoded frame.

    For planar YUV the luma plane is the grey picture: read it in place (no swscale call,
    which costs several ms per 720p frame while decoder threads share the cores) and map
    video range (16..235) to full range unless the stream is full range.
    """
    name = frame.format.name
    if name.startswith(("yuv4", "yuvj4")) and frame.format.components[0].bits == 8:
        plane = frame.planes[0]
        y = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, :plane.width]
        if name.startswith("yuvj") or getattr(frame, "color_range", 0) == 2:
            return y.astype(np.float32)
        return (y.astype(np.float32) - 16) * np.float32(255 / 219)
    return frame.to_ndarray(format="gray").astype(np.float32)


def _small_grey(rgb_or_grey: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    grey = rgb_or_grey if rgb_or_grey.ndim == 2 else cv2.cvtColor(rgb_or_grey, cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA).astype(np.float32)


@dataclass
class Match:
    frame: int
    score: float
    margin: float  # second-best full-resolution score among the candidates (best +-2 frames), minus the best
    rotation: int  # k quarter turns counter-clockwise applied to the decoded frames
    frames: np.ndarray  # (F, H, W, 3) uint8 RGB at frame + offsets
    contrast: float = float("nan")  # 1 - best / median quarter-resolution score over the scanned window


def match_video(path, image: np.ndarray, *, search=DEFAULT_SEARCH, offsets=(-4, -2, 0),
                max_error: float = DEFAULT_MAX_ERROR, expected: int = EXPECTED_FRAME,
                min_contrast: float = DEFAULT_MIN_CONTRAST) -> Match:
    """Find the frame of `path` that `image` (H, W, 3 RGB) was cut from; raise Unusable if none fits.

    Frames are numbered from 0 in presentation order (the reference's decode count),
    from the packets' timestamps (`frame_numbers`: a skipped timestamp shifts nothing). The scan
    starts at `expected` +-10 frames (where the image usually is); it widens to the
    whole `search` window when no frame there passes `max_error` or the best one
    sits on the narrow window's edge. Decoding cost follows the window: the seek
    lands on the keyframe before it.

    A frame is accepted only when (1) the window it was chosen from decoded whole (else
    "truncated video"), (2) it differs from the image by at most `max_error` grey levels, and
    (3) it stands out: its quarter-resolution score is below (1 - `min_contrast`) x the
    window's median score, unless it is under DEFAULT_STILL_ERROR (a standing car's frames all
    match; another scene's frames all miss, at 10+ grey levels).
    """
    lo, hi = search
    narrow = (max(lo, expected - NARROW), min(hi, expected + NARROW))
    if narrow[0] <= narrow[1] and narrow != (lo, hi):
        try:
            m = _scan(path, image, narrow, offsets, max_error, min_contrast)
            if narrow[0] < m.frame < narrow[1] or m.frame in (lo, hi):
                return m
        except Unusable as e:
            if e.kind in ("unreadable video", "truncated video"):  # the wider window cannot fare better
                raise
    return _scan(path, image, search, offsets, max_error, min_contrast)


class _Truncated(Exception):
    """The video holds fewer frames than the window needs."""


REORDER = 32  # frames a decoder may hold back (B-frame reordering is a few)


def frame_numbers(container, stream, last: int) -> dict[int, int]:
    """{pts: frame number} of the video's first frames up to `last` (and a few beyond): a frame's number is its
    place in presentation order, counted from 0, as the reference's OpenCV decode count numbered frames. Read
    from the packets' timestamps (demuxed, not decoded), so a skipped timestamp does not shift the numbers as
    timestamp x average rate would. Fewer entries than `last` + 1: the video ends before frame `last`."""
    import av

    pts = []
    try:
        for packet in container.demux(stream):
            if packet.pts is not None:
                pts.append(packet.pts)
                if len(pts) > last + REORDER:
                    break
    except av.error.FFmpegError:
        pass  # a damaged or cut file: its frames end here
    return {p: n for n, p in enumerate(sorted(pts))}


def _scan(path, image: np.ndarray, search, offsets, max_error: float, min_contrast: float = DEFAULT_MIN_CONTRAST,
          still_error: float = DEFAULT_STILL_ERROR) -> Match:
    """Decode frames search[0] + min(offsets) .. search[1] + max(offsets) and match them."""
    import av

    lo_search, hi_search = search
    first, last = lo_search + min(offsets), hi_search + max(max(offsets), 0)
    if first < 0:
        raise FlowprepError(f"search window {search} with offsets {list(offsets)} starts before frame 0")
    h, w = image.shape[:2]
    small = (max(w // 4, 8), max(h // 4, 8))
    target = _small_grey(image, small)
    grey_image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    kept: dict[int, object] = {}
    greys: dict[int, np.ndarray] = {}
    scores: dict[int, tuple[float, int]] = {}
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as e:
        raise Unusable("unreadable video", f"{path}: {getattr(e, 'strerror', None) or e}") from None
    last_seen = -1
    rotations: list[int] | None = None  # quarter turns that give the image's orientation
    try:
        with container:
            if not container.streams.video:
                raise Unusable("unreadable video", f"{path}: no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            number = frame_numbers(container, stream, last)
            if len(number) <= last:
                last_seen = len(number) - 1
                raise _Truncated()
            by_number = {n: pts for pts, n in number.items()}
            container.seek(by_number[first], stream=stream, backward=True, any_frame=False)
            # Between the keyframe and the window nothing is kept: skip frames no other frame refers to.
            # Full decoding resumes a few frames early, more than B-frame reordering can delay a frame.
            stream.codec_context.skip_frame = "NONREF"
            for frame in container.decode(stream):
                index = number.get(frame.pts)
                if index is None:
                    continue
                last_seen = max(last_seen, index)
                if index >= first - 8 and stream.codec_context.skip_frame != "DEFAULT":
                    stream.codec_context.skip_frame = "DEFAULT"
                if index > last:
                    break
                if index < first:
                    continue  # decoded (later frames depend on it) but never converted
                kept[index] = frame
                if lo_search <= index <= hi_search:
                    grey = greys[index] = _luma(frame)
                    if rotations is None:
                        portrait = grey.shape[0] > grey.shape[1]
                        rotations = [k for k in range(4) if (portrait != (k % 2 == 1)) == (h > w)]
                    # Every frame is scored under every candidate rotation: orientation can only be
                    # judged on the matching frame. Resize first, rotate the small image (cheap).
                    resized = {}
                    for k in rotations:
                        if k % 2 not in resized:
                            size = small if k % 2 == 0 else small[::-1]
                            resized[k % 2] = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
                        err = float(np.abs(np.rot90(resized[k % 2], k) - target).mean())
                        if index not in scores or err < scores[index][0]:
                            scores[index] = (err, k)
    except _Truncated:
        pass
    except av.error.FFmpegError as e:
        if not kept and last_seen < 0:
            raise Unusable("unreadable video", f"{path}: {getattr(e, 'strerror', None) or e}") from None
        # a damaged tail: use what decoded
    if last_seen < last:
        # The best frame of a window that was not seen whole is no evidence: a download cut before the
        # true frame offers its last frames as the "best" (7 frames early, score 8.2, in our trials).
        where = f"decoding ends at frame {last_seen}" if last_seen >= 0 else f"no frame decodes from frame {first} on"
        raise Unusable("truncated video", f"{path}: {where}, before the end of the search window {lo_search}:"
                                          f"{hi_search} and its offsets (frame {last}; incomplete download?)")
    # Quarter resolution finds the neighbourhood; full resolution picks the frame, since consecutive
    # frames of a slow drive differ by about a pixel, a quarter of one at quarter resolution.
    coarse = min(scores, key=lambda i: scores[i][0])
    rotation = scores[coarse][1]
    fine = {}
    for i in (i for i in scores if abs(i - coarse) <= 2):
        rotated = np.rot90(greys[i], rotation)
        if rotated.shape == grey_image.shape:
            fine[i] = float(np.abs(rotated - grey_image).mean())
    if not fine:
        raise Unusable("size mismatch", f"{path}: video frames are {greys[coarse].shape[1]}x{greys[coarse].shape[0]}, "
                                        f"the BDD10k image is {w}x{h}")
    best = min(fine, key=fine.get)
    score = fine[best]
    margin = (sorted(fine.values())[1] - score) if len(fine) > 1 else float("nan")
    median = float(np.median([e for e, _ in scores.values()]))
    contrast = 1 - scores[coarse][0] / median if median > 0 else 0.0
    if score > max_error:
        raise Unusable("no matching frame", f"{path}: best frame {best} differs by {score:.1f} grey levels "
                                            f"(threshold {max_error:g})")
    if contrast < min_contrast and score > still_error:
        raise Unusable("no distinct frame", f"{path}: best frame {best} differs by {score:.1f} grey levels but does "
                                            f"not stand out from the window (contrast {contrast:.2f} < "
                                            f"{min_contrast:g}; a video of another scene?)")
    needed = [best + o for o in offsets]
    if any(n not in kept for n in needed):
        raise Unusable("truncated video", f"{path}: frames {needed} needed, decoding ends at frame {last_seen}")
    frames = []
    for n in needed:
        rgb = np.ascontiguousarray(np.rot90(kept[n].to_ndarray(format="rgb24"), rotation))
        if rgb.shape[:2] != (h, w):
            raise Unusable("size mismatch", f"{path}: video frames are {rgb.shape[1]}x{rgb.shape[0]}, "
                                            f"the BDD10k image is {w}x{h}")
        frames.append(rgb)
    return Match(best, score, margin, rotation, np.stack(frames), contrast)


def index_videos(root: Path) -> dict[str, list[Path]]:
    """id -> video files anywhere under `root` (BDD100K keeps some in numbered sub-folders)."""
    found: dict[str, list[Path]] = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            stem, ext = os.path.splitext(name)
            if ext.lower() in (".mov", ".mp4"):
                found.setdefault(stem, []).append(Path(dirpath) / name)
    return {k: sorted(v) for k, v in found.items()}


def _bdd10k_layout(root: Path) -> tuple[Path, dict[str, str]]:
    """(base folder, layout patterns) for the new (images/10k) or old (seg/) BDD10k release."""
    m = load_manifest("bdd")
    for base in (root, root.parent):
        if (base / "bdd100k/images/10k").is_dir():
            return base, {"image": m.layout["image"], "label": m.layout["label"]}
        if (base / "bdd100k/seg/images").is_dir():
            return base, {"image": m.layout["image_old"], "label": m.layout["label_old"]}
    raise FlowprepError(f"{root}: no BDD10k here (expected bdd100k/images/10k/ or bdd100k/seg/images/ inside it)")


def parse_bdd_split_file(path) -> list[str]:
    """Ids from lines ``{id}_307`` (the reference's format) or ``{id}``."""
    path = Path(path)
    if not path.is_file():
        raise FlowprepError(f"{path}: split file not found")
    ids = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#")[0].strip()
        if not line:
            continue
        head, _, tail = line.rpartition("_")
        ids.append(check_name(head if head and tail.isdigit() else line, f"{path}:{n}"))
    if not ids:
        raise FlowprepError(f"{path}: split file lists no ids")
    return ids


@dataclass
class BddLoader:
    """Picklable: matches planned sample i's video and loads frames, label and the BDD10k image."""

    images: list[str]
    labels: list[str]
    videos: list[list[str]]  # per sample, every file under the videos folder with its id (usually one)
    search: tuple[int, int]
    offsets: list[int]
    max_error: float
    shape: tuple[int, int]
    min_contrast: float = DEFAULT_MIN_CONTRAST

    def __call__(self, i: int) -> Loaded:
        image = read_rgb(Path(self.images[i]))
        label = read_train_ids(load_manifest("bdd"), Path(self.labels[i]))
        if image.shape[:2] != self.shape or label.shape != self.shape:
            raise Unusable("size mismatch", f"{self.images[i]}: image {image.shape[1]}x{image.shape[0]}, label "
                                            f"{label.shape[1]}x{label.shape[0]}, dataset {self.shape[1]}x{self.shape[0]}")
        # several files with one id (copies in two folders, or two different drives): each is matched, the
        # best match wins, and the report names the file taken; none matching is the first file's reason
        matches, failures = [], []
        for video in self.videos[i]:
            try:
                matches.append((match_video(video, image, search=self.search, offsets=self.offsets,
                                            max_error=self.max_error, min_contrast=self.min_contrast), video))
            except Unusable as e:
                failures.append(e)
        if not matches:
            raise failures[0]
        m, video = min(matches, key=lambda mv: mv[0].score)
        record = np.array([m.frame, m.score, m.margin, 90 * m.rotation, m.contrast], dtype=np.float64)
        info = self._info(i, record) | {"video": video}
        if len(self.videos[i]) > 1:
            info["candidates"] = {v: ("matched" if any(v == w for _, w in matches) else "no match")
                                  for v in self.videos[i]}
        return Loaded(m.frames, label[None], {"eval_image": image, "match": record}, info)

    def describe(self, i: int, reader) -> dict:
        """The report of planned sample i as written in the store (its match record survives a kill)."""
        return self._info(i, np.asarray(reader.extra(i, "match")))

    def _info(self, i: int, record: np.ndarray) -> dict:
        frame, score, margin, rotation, contrast = (float(v) for v in record)
        return {"video": self.videos[i][0], "frame": int(frame), "score": round(score, 3),
                "margin": None if np.isnan(margin) else round(margin, 3), "rotation_deg": int(rotation),
                "contrast": round(contrast, 3)}


def plan_bddvid(bdd10k, bdd100k, split: str, offsets: list[int], *, split_file=None, search=DEFAULT_SEARCH,
                max_error: float = DEFAULT_MAX_ERROR, min_contrast: float = DEFAULT_MIN_CONTRAST,
                from_splits=("train",)) -> Plan:
    bdd10k, bdd100k = Path(bdd10k), Path(bdd100k)
    for p in (bdd10k, bdd100k):
        if not p.is_dir():
            raise FlowprepError(f"{p}: folder not found")
    base, layout = _bdd10k_layout(bdd10k)
    labelled: dict[str, tuple[Path, Path]] = {}
    unlabelled: dict[str, tuple[Path, Path]] = {}  # images of the chosen splits whose label file is missing
    for src in from_splits:
        label_glob = layout["label"].format(split=src, id="*")
        for label in sorted(base.glob(label_glob)):
            vid = label.name.removesuffix(".png").removesuffix("_train_id")
            labelled[vid] = (base / layout["image"].format(split=src, id=vid), label)
        for image in sorted(base.glob(layout["image"].format(split=src, id="*"))):
            if image.stem not in labelled:
                unlabelled[image.stem] = (image, base / layout["label"].format(split=src, id=image.stem))
    if not labelled:
        raise FlowprepError(f"{base}: no BDD10k label files in split(s) {list(from_splits)}")
    if split_file:
        wanted = parse_bdd_split_file(split_file)
    else:
        wanted = [v for v in sorted(labelled) if split_of(v) == split]
    videos = index_videos(bdd100k)

    ids, images, labels, paths, excluded = [], [], [], [], []
    if not split_file:  # with a split file, its ids say which images were meant
        wanted += [v for v in sorted(unlabelled) if split_of(v) == split]
    for vid in wanted:
        if vid in unlabelled and vid not in labelled:
            excluded.append((vid, "no label", f"{unlabelled[vid][0]}: label file {unlabelled[vid][1]} not found"))
        elif vid not in labelled:
            excluded.append((vid, "not found", "no BDD10k label for this id"))
        elif not labelled[vid][0].is_file():
            excluded.append((vid, "missing image", str(labelled[vid][0])))
        elif vid not in videos:
            excluded.append((vid, "no video", f"no {vid}.mov under {bdd100k}"))
        else:
            ids.append(vid)
            images.append(str(labelled[vid][0]))
            labels.append(str(labelled[vid][1]))
            paths.append([str(p) for p in videos[vid]])
    sources = {"bdd10k": str(base.resolve()), "bdd100k": str(bdd100k.resolve()), "search": list(search),
               "max_error": max_error, "min_contrast": min_contrast, "split_rule": "split file" if split_file else "crc32(id) % 8 == 0 -> val"}
    if not ids:
        return Plan(None, None, excluded, sources)
    shape = dataset_resolution(load_manifest("bdd"), base, "bdd")
    h, w = shape
    spec = StoreSpec(
        dataset="bddvid", split=split, classes=list(load_classes().names), height=h, width=w, sample_ids=ids,
        frame_offsets=sorted(offsets), label_offsets=[0],
        extras={
            "eval_image": {"dtype": "uint8", "shape": [h, w, 3], "dims": ["y", "x", "rgb"], "fill": 0,
                           "doc": "the original BDD10k image (labels match it exactly); evaluate on it"},
            "match": {"dtype": "float64", "shape": [len(MATCH_FIELDS)], "dims": ["field"], "fill": 0.0,
                      "doc": f"video match record: {', '.join(MATCH_FIELDS)}"},
        },
    )
    return Plan(spec, BddLoader(images, labels, paths, tuple(search), sorted(offsets), max_error, shape,
                                     min_contrast), excluded, sources)
