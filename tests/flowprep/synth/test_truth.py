"""The truth is exact: warping with the true flow reproduces frames; BDD matches point at the right frame."""

import json

import av
import cv2
import numpy as np
import pytest

from flowprep.synth.datasets import Sequence
from flowprep.synth.generate import generate, plan_jobs
from flowprep.synth.preview import sample_paths


def _warp(image, flow):
    """Sample `image` (the frame the flow points into) at p + flow(p): image seen from the flow's frame."""
    h, w = flow.shape[:2]
    v, u = np.mgrid[0:h, 0:w].astype(np.float32)
    return cv2.remap(image, u + flow[..., 0], v + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _frame(root, dataset, split, sample_id, offset):
    path, _ = sample_paths(root, dataset, split, sample_id)
    name = path.name
    if dataset == "viper":
        seq, f = name[:-4].split("_")
        path = path.with_name(f"{seq}_{int(f) + offset:05d}.jpg")
    elif dataset == "synthia-seq":
        path = path.with_name(f"{int(name[:-4]) + offset:06d}.png")
    else:
        city, seq, f, _ = name.split("_")
        path = path.with_name(f"{city}_{seq}_{int(f) + offset:06d}_leftImg8bit.png")
    return cv2.imread(str(path)).astype(np.float32)


# `tolerance`: grey levels for the median over non-occluded pixels of the tiny files (JPEG for VIPER,
# object edges at 128 px width, sensor noise for Cityscapes: two independent noisy frames alone differ by
# a median of about 4). `ratio`: warped error / no-motion error on moving pixels; Cityscapes' noise sits
# in both terms and bounds it from below.
@pytest.mark.parametrize("dataset,split,sample_id,tolerance,ratio", [
    ("viper", "train", "001_00020", 4.0, 0.6),
    ("synthia-seq", "train", "000005", 1.0, 0.6),
    ("cityscapes-seq", "val", "frankfurt_000000_000294", 6.0, 0.8),
])
@pytest.mark.parametrize("pair", [(0, -1), (0, -2), (-1, 0), (0, 1)])
def test_warping_the_files_with_the_true_flow_reproduces_the_frame(synth_tiny, dataset, split, sample_id, tolerance,
                                                                     ratio, pair):
    a, b = pair
    truth = np.load(synth_tiny / "_truth" / dataset / split / f"{sample_id}.npz")
    flow, occluded = truth[f"flow_{a}_{b}"], truth[f"occ_{a}_{b}"]
    frame_a, frame_b = (_frame(synth_tiny, dataset, split, sample_id, o) for o in (a, b))
    err = np.abs(_warp(frame_b, flow) - frame_a).mean(-1)
    visible = ~occluded
    assert visible.mean() > 0.8
    assert np.median(err[visible]) < tolerance
    moving = visible & (np.linalg.norm(flow, axis=-1) > 2)  # where assuming no motion is clearly wrong
    assert err[moving].mean() < ratio * np.abs(frame_b - frame_a).mean(-1)[moving].mean()
    assert err[occluded].mean() > 2 * err[visible].mean()  # occlusion masks mark where warping fails


@pytest.mark.parametrize("dataset", ["viper", "synthia-seq"])
def test_the_true_flow_is_exact_on_clean_renders(dataset):
    """Without JPEG, noise or low-resolution aliasing the warp error is essentially zero on visible pixels."""
    job = next(j for j in plan_jobs("tiny", 0, [dataset]))
    seq = Sequence(job, (144, 256))
    t = job.labelled[-1]
    for a, b in [(0, -1), (0, -2), (0, 1)]:
        ga, gb = seq.geometry(t + a, keep=True), seq.geometry(t + b, keep=True)
        flow, visible = seq.renderer.exact_flow(ga, gb)
        frame_a, frame_b = seq.image(ga, t + a).astype(np.float32), seq.image(gb, t + b).astype(np.float32)
        err = np.abs(_warp(frame_b, flow) - frame_a).mean(-1)
        assert np.median(err[visible]) < 0.5
        assert np.percentile(err[visible], 75) < 2.0
        shifted = np.abs(_warp(frame_b, flow + 1.0) - frame_a).mean(-1)  # a flow one pixel off is visibly worse
        assert shifted[visible].mean() > 1.5 * err[visible].mean()


def test_truth_has_both_directions_at_distances_1_and_2(synth_tiny):
    truth = np.load(synth_tiny / "_truth/viper/train/001_00010.npz")
    for a, b in [(0, -1), (-1, 0), (0, -2), (-2, 0), (-1, -2), (0, 1), (0, 2)]:
        assert truth[f"flow_{a}_{b}"].shape == (72, 128, 2) and truth[f"flow_{a}_{b}"].dtype == np.float32
        assert truth[f"occ_{a}_{b}"].dtype == bool
    cs = np.load(synth_tiny / "_truth/cityscapes-seq/train/aachen_000000_000019.npz")
    assert {"flow_0_3", "flow_0_6", "flow_0_10"} <= set(cs.files)


def test_objects_move_independently_and_things_get_occluded(synth_tiny):
    truth = np.load(synth_tiny / "_truth/cityscapes-seq/val/lindau_000000_000019.npz")
    flow = truth["flow_0_-2"]
    assert 0.001 < truth["occ_0_-2"].mean() < 0.2
    assert np.abs(flow).max() > 2.0  # visible motion between frames at distance 2
    assert (flow[-1] == 0).all()  # the hood row moves with the camera


def test_bdd_truth_points_at_the_video_frame_of_each_10k_image(synth_tiny):
    matches = json.loads((synth_tiny / "_truth/bdd/matches.json").read_text())
    for vid, info in matches.items():
        if info["status"] != "ok":
            continue
        image = cv2.imread(str(synth_tiny / f"bdd100k/images/10k/{info['split10k']}/{vid}.jpg"))[..., ::-1].astype(float)
        video = next(synth_tiny.glob(f"bdd100k/videos/**/{vid}.mov"))
        errors = {}
        with av.open(str(video)) as c:
            for i, frame in enumerate(c.decode(video=0)):
                if abs(i - info["frame"]) <= 2:
                    errors[i] = np.abs(frame.to_ndarray(format="rgb24") - image).mean()
        assert min(errors, key=errors.get) == info["frame"]
        assert errors[info["frame"]] < 5.0  # a JPEG re-encoding of that very frame


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    a = generate(tmp_path / "a", scale="tiny", seed=3, datasets=["synthia-seq"], progress=False)
    b = generate(tmp_path / "b", scale="tiny", seed=3, datasets=["synthia-seq"], progress=False)
    generate(tmp_path / "c", scale="tiny", seed=4, datasets=["synthia-seq"], progress=False)
    assert a == b
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) > 20
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    frame = "SYNTHIA-SEQS-04-DAWN/RGB/Stereo_Left/Omni_F/000005.png"
    assert (tmp_path / "a" / frame).read_bytes() != (tmp_path / "c" / frame).read_bytes()


def test_bdd_videos_are_the_same_files_whatever_the_number_of_workers(synth_tiny, tmp_path):
    """synth_tiny ran with 2 workers; one worker must write byte-identical videos and BDD10k images (x264 ran
    with as many threads as it saw cores, and its macroblock-tree rate control varied run to run)."""
    generate(tmp_path / "one", scale="tiny", seed=0, datasets=["bdd"], workers=1, progress=False)
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one/bdd100k").rglob("*") if p.is_file())
    assert sum(f.suffix == ".mov" for f in files) >= 4
    for rel in files:
        assert (tmp_path / "one" / rel).read_bytes() == (synth_tiny / rel).read_bytes(), rel
