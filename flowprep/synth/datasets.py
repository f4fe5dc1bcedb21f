"""Write small replicas of the four raw dataset layouts, with exact ground truth under `_truth/`.

Each dataset is cut into jobs (a Cityscapes snippet, a VIPER sequence, the
Synthia sequence, a BDD video): a job renders its frames with its own seeded
world and writes them with the real file names, formats and label encodings
(the layout patterns and raw label ids come from `manifests/`).

Truth, per labelled sample: `_truth/{dataset}/{split}/{sample_id}.npz` with
`flow_{a}_{b}` (H, W, 2) float32 pixels from frame t+a to t+b and `occ_{a}_{b}`
(H, W) bool (True = occluded or leaving the frame), for the pairs in `PAIRS`
whose frames exist. BDD adds `_truth/bdd/matches.json`: which video frame each
BDD10k image was cut from, and which ids are broken on purpose.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from flowprep.manifest import load_classes, load_manifest
from flowprep.synth import world as W
from flowprep.synth.render import Renderer
from flowprep.synth.style import STYLES, shade

# Frame pairs (a, b) relative to t with exact flow in the truth files: both directions,
# distances 1 and 2, ACCEL's t-1 -> t-2, and the temporal metrics' t -> t+k.
PAIRS = {
    "k1": [(0, -1), (-1, 0), (0, -2), (-2, 0), (-1, -2), (-2, -1), (0, 1), (1, 0), (0, 2), (2, 0)],
    "cityscapes-seq": [(0, 3), (0, 6), (0, 10)],
    "bdd": [(0, -1), (-1, 0), (0, -2), (-2, 0), (0, -4), (-4, 0), (-2, -4), (-4, -2), (0, 2), (2, 0)],
}

# (H, W) per scale: native sizes divided by 16 (tiny) and 8 (demo), aspect ratios kept; full: native.
RESOLUTIONS = {
    "tiny": {"cityscapes-seq": (64, 128), "viper": (72, 128), "synthia-seq": (38, 64), "bdd": (54, 96)},
    "demo": {"cityscapes-seq": (128, 256), "viper": (135, 240), "synthia-seq": (95, 160), "bdd": (90, 160)},
    "full": {"cityscapes-seq": (1024, 2048), "viper": (1080, 1920), "synthia-seq": (760, 1280), "bdd": (720, 1280)},
}

# Frame rates: Cityscapes 17 Hz and BDD 30 fps are the real ones; VIPER and Synthia
# are taken as 15 and 10 fps (assumed; nothing downstream depends on them).
FPS = {"cityscapes-seq": 17.0, "viper": 15.0, "synthia-seq": 10.0, "bdd": 30.0}

CONTENT = {
    "viper": W.Content(road_half=5.5, terrain=2.5, cars_per_100m=11, truck_prob=0.14, bus_prob=0.05, van_prob=0.1,
                       people_per_100m=3, riders_per_100m=0.8, fence_prob=0.35, tree_every=10, pole_every=22),
    "synthia-seq": W.Content(road_half=5.0, sidewalk=3.5, terrain=0.0, cars_per_100m=6, truck_prob=0.05,
                             bus_prob=0.03, people_per_100m=12, riders_per_100m=2.5, fence_prob=0.4,
                             tree_every=15, pole_every=14, light_prob=0.4),
    "cityscapes-seq": W.Content(road_half=4.5, sidewalk=3.0, terrain=1.5, building_prob=0.9, wall_prob=0.25,
                                cars_per_100m=12, truck_prob=0.05, bus_prob=0.04, train_prob=0.12,
                                people_per_100m=9, riders_per_100m=2.0, tree_every=14, pole_every=15),
    "bdd": W.Content(road_half=6.0, sidewalk=2.0, terrain=3.0, building_prob=0.6, wall_prob=0.05,
                     cars_per_100m=14, truck_prob=0.15, bus_prob=0.05, people_per_100m=2, riders_per_100m=0.5,
                     tree_every=8, pole_every=25),
}

CAMERA = {  # focal length as a fraction of the width, horizon row as a fraction of the height, hood, speed m/s
    "cityscapes-seq": (1.1, 0.46, 0.82, 8.0),
    "viper": (0.8, 0.48, None, 10.0),
    "synthia-seq": (0.85, 0.47, None, 6.0),
    "bdd": (0.7, 0.45, 0.88, 10.0),
}

# World classes whose raw class has another name in a dataset (default: the Cityscapes name).
RAW_NAMES = {
    "viper": {W.RIDER: "person", W.POLE: "infrastructure", W.WALL: "building", W.VAN: "van", W.LANE: "road",
              W.EGO: "unlabeled"},
    "synthia-seq": {W.PERSON: "pedestrian", W.RIDER: "bicycle", W.MOTORCYCLE: "bicycle", W.TRUCK: "car",
                    W.BUS: "car", W.VAN: "car", W.TERRAIN: "void", W.WALL: "building", W.TRAIN: "void",
                    W.LANE: "lanemarking", W.EGO: "void"},
    "cityscapes-seq": {W.VAN: "car", W.LANE: "road", W.EGO: "ego vehicle"},
}


def world_to_raw(dataset: str) -> np.ndarray:
    """(N_WORLD_CLASSES,) raw label value of each world class in `dataset`'s encoding."""
    names = load_classes().names
    if dataset == "bdd":  # masks are already trainIds
        lut = np.arange(W.N_WORLD_CLASSES, dtype=np.int64)
        lut[W.VAN], lut[W.LANE], lut[W.EGO] = names.index("car"), names.index("road"), 255
        return lut
    manifest = load_manifest(dataset)
    renames = RAW_NAMES[dataset]
    return np.array([manifest.raw_id(renames.get(c, names[c] if c < len(names) else "")) for c in range(W.N_WORLD_CLASSES)])


def _seed(*parts) -> int:
    return zlib.crc32("/".join(str(p) for p in parts).encode())


@dataclass
class Job:
    dataset: str
    split: str
    name: str  # snippet / sequence / video id
    frames: list[int]  # frame numbers to render
    labelled: list[int]  # frames that are samples t (truth is written for them)
    seed: int
    extra: dict


class Sequence:
    """A seeded world and camera for one job; renders frames and exact flow by frame number."""

    def __init__(self, job: Job, resolution: tuple[int, int]):
        rng = np.random.default_rng(job.seed)
        h, w = resolution
        focal, horizon, hood, speed = CAMERA[job.dataset]
        self.fps = FPS[job.dataset]
        self.start = min(job.frames)
        duration = (max(job.frames) - self.start + 1) / self.fps
        self.camera = W.Camera(width=w, height=h, focal=focal * w, cx=w / 2 - 0.5, cy=horizon * h,
                               speed=speed * rng.uniform(0.7, 1.2), phase=rng.uniform(0, 6.3), hood_top=hood)
        self.scene = W.build_scene(rng, CONTENT[job.dataset], z_end=self.camera.speed * duration + 80, duration=duration)
        self.renderer = Renderer(self.scene, self.camera)
        self.style = STYLES[job.dataset]
        self.job = job
        self._geoms: dict[int, object] = {}

    def time(self, frame: int) -> float:
        return (frame - self.start) / self.fps

    def geometry(self, frame: int, keep: bool = False):
        if frame in self._geoms:
            return self._geoms[frame]
        g = self.renderer.geometry(self.time(frame))
        if keep:
            self._geoms[frame] = g
        return g

    def image(self, geom, frame: int) -> np.ndarray:
        return shade(geom, self.scene, self.style, _seed(self.job.seed, frame))

    def truth(self, t: int, pairs, available) -> dict[str, np.ndarray]:
        out = {}
        for a, b in pairs:
            if t + a in available and t + b in available:
                flow, visible = self.renderer.exact_flow(self.geometry(t + a, True), self.geometry(t + b, True))
                out[f"flow_{a}_{b}"], out[f"occ_{a}_{b}"] = flow, ~visible
        return out


def _needed(job: Job, pairs) -> set[int]:
    return {t + o for t in job.labelled for pair in pairs for o in pair} | set(job.labelled)


def _write_png(path: Path, img: np.ndarray, params=()):
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img, list(params)):
        raise OSError(f"could not write {path}")


def _save_truth(root: Path, dataset: str, split: str, sample_id: str, arrays: dict):
    path = root / "_truth" / dataset / split / f"{sample_id}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


def run_job(job: Job, root: Path, scale: str) -> dict:
    """Render and write one job; returns what it wrote (for the summary and BDD's truth)."""
    seq = Sequence(job, RESOLUTIONS[scale][job.dataset])
    return {"viper": _viper, "synthia-seq": _synthia, "cityscapes-seq": _cityscapes, "bdd": _bdd}[job.dataset](seq, root)


def _frames_with_truth(seq: Sequence, root: Path, pairs, write_frame):
    job = seq.job
    needed = _needed(job, pairs)
    available = set(job.frames)
    for f in job.frames:
        geom = seq.geometry(f, keep=f in needed)
        write_frame(f, seq.image(geom, f), geom)
    for t in job.labelled:
        _save_truth(root, job.dataset, job.split, job.extra["ids"][t], seq.truth(t, pairs, available))


def _viper(seq: Sequence, root: Path) -> dict:
    m, job = load_manifest("viper"), seq.job
    lut = world_to_raw("viper")
    palette = np.zeros((256, 3), np.uint8)
    for c in m.classes:
        palette[c.id] = c.colour
    num = int(job.name)

    def write(f, rgb, geom):
        fields = {"split": job.split, "seq": num, "frame": f}
        _write_png(root / m.layout["frame"].format(**fields), rgb[..., ::-1], (cv2.IMWRITE_JPEG_QUALITY, 92))
        _write_png(root / m.layout["label"].format(**fields), palette[lut[geom.cls]][..., ::-1])

    _frames_with_truth(seq, root, PAIRS["k1"], write)
    return {"samples": len(job.labelled)}


def _synthia(seq: Sequence, root: Path) -> dict:
    m, job = load_manifest("synthia-seq"), seq.job
    lut = world_to_raw("synthia-seq")

    def write(f, rgb, geom):
        _write_png(root / m.layout["frame"].format(frame=f), rgb[..., ::-1])
        label = np.zeros((*geom.cls.shape, 3), np.uint16)  # BGR as OpenCV writes: class id in R
        label[..., 2] = lut[geom.cls]
        label[..., 1] = np.minimum(geom.instance, 65535)
        _write_png(root / m.layout["label"].format(frame=f), label)

    _frames_with_truth(seq, root, PAIRS["k1"], write)
    return {"samples": len(job.labelled)}


def _cityscapes(seq: Sequence, root: Path) -> dict:
    m, job = load_manifest("cityscapes-seq"), seq.job
    lut = world_to_raw("cityscapes-seq")
    colours = np.zeros((256, 3), np.uint8)
    for c in m.classes:
        if c.train_id != 255:
            colours[c.id] = load_classes().palette[c.train_id]
    city, num = job.extra["city"], job.extra["seq"]
    t = job.labelled[0]

    def write(f, rgb, geom):
        fields = {"split": job.split, "city": city, "seq": num, "frame": f}
        _write_png(root / m.layout["frame"].format(**fields), rgb[..., ::-1])
        if f == t:
            label_path = root / m.layout["label"].format(**fields)
            ids = lut[geom.cls].astype(np.uint8)
            _write_png(label_path, ids)
            _write_png(Path(str(label_path).replace("_labelIds.png", "_color.png")), colours[ids][..., ::-1])

    _frames_with_truth(seq, root, PAIRS["k1"] + PAIRS["cityscapes-seq"], write)
    return {"samples": 1}


def _bdd(seq: Sequence, root: Path) -> dict:
    """One BDD10k id: its 10k image and mask, and (unless broken on purpose) its BDD100K video."""
    import av

    m, job = load_manifest("bdd"), seq.job
    vid, status, n = job.name, job.extra["status"], job.labelled[0]
    lut = world_to_raw("bdd")
    image_path = root / m.layout["image"].format(split=job.split, id=vid)
    mask_path = root / m.layout["label"].format(split=job.split, id=vid)
    video_rel = None
    geom_n = seq.geometry(n, keep=True)
    frame_n = seq.image(geom_n, n)
    if status in ("ok", "truncated"):
        video_rel = f"bdd100k/videos/{job.extra['video_split']}/{job.extra['subdir']}{vid}.mov"
        video_path = root / video_rel
        video_path.parent.mkdir(parents=True, exist_ok=True)
        needed = _needed(job, PAIRS["bdd"])
        # moov atom first (faststart): a file cut short still decodes up to the cut, like a partial download.
        with av.open(str(video_path), "w", format="mov", options={"movflags": "faststart"}) as out:
            stream = out.add_stream("libx264", rate=int(FPS["bdd"]))
            stream.width, stream.height, stream.pix_fmt = seq.camera.width, seq.camera.height, "yuv420p"
            # "Same seed, same files" for any --workers and machine: one encoder thread (x264's output follows
            # its thread count, which follows the cores it sees) and no macroblock-tree rate control (with it,
            # two runs of one seed wrote different first GOPs, frames 0-249, even in one process).
            stream.options = {"crf": "18", "preset": "veryfast", "threads": "1", "x264-params": "mbtree=0"}
            moving_from = job.extra.get("moving_from", 0)
            still = None  # frames up to `moving_from` show that frame: the car waits, nothing more is rendered
            for f in job.frames:
                if f <= moving_from and moving_from:
                    if still is None:
                        still = seq.image(seq.geometry(moving_from), moving_from)
                    rgb = still
                else:
                    rgb = frame_n if f == n else seq.image(seq.geometry(f, keep=f in needed), f)
                for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
        # The BDD10k image is a re-encoded copy of the decoded video frame n.
        with av.open(str(video_path)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i == n:
                    frame_n = frame.to_ndarray(format="rgb24")
                    break
        if status == "truncated":  # an incomplete download: cut well before frame n
            data = video_path.read_bytes()
            video_path.write_bytes(data[: len(data) * 45 // 100])
        _save_truth(root, "bdd", job.split, vid, seq.truth(n, PAIRS["bdd"], set(job.frames)))
    elif status == "corrupt":
        video_rel = f"bdd100k/videos/{job.extra['video_split']}/{job.extra['subdir']}{vid}.mov"
        video_path = root / video_rel
        video_path.parent.mkdir(parents=True, exist_ok=True)
        video_path.write_bytes(np.random.default_rng(job.seed).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    _write_png(image_path, frame_n[..., ::-1], (cv2.IMWRITE_JPEG_QUALITY, 90))
    _write_png(mask_path, lut[geom_n.cls].astype(np.uint8))
    return {"id": vid, "split10k": job.split, "video": video_rel, "frame": n, "status": status,
            "frames_in_video": len(job.frames) if status == "ok" else None}
