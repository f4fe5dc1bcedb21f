"""Each replica has the real dataset's paths, file formats, dtypes and label encodings."""

import json

import av
import cv2
import numpy as np
import pytest

from flowprep.labels import read_train_ids
from flowprep.manifest import load_manifest
from flowprep.synth.datasets import RESOLUTIONS


def _is_jpeg(path):
    return path.read_bytes()[:3] == b"\xff\xd8\xff"


def _is_png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_viper_layout(synth_tiny):
    m = load_manifest("viper")
    h, w = RESOLUTIONS["tiny"]["viper"]
    for split, seq, n in (("train", 1, 30), ("train", 2, 30), ("val", 1, 23)):
        for f in range(n):
            img = synth_tiny / m.layout["frame"].format(split=split, seq=seq, frame=f)
            cls = synth_tiny / m.layout["label"].format(split=split, seq=seq, frame=f)
            assert _is_jpeg(img) and _is_png(cls)
    img = cv2.imread(str(synth_tiny / "train/img/001/001_00010.jpg"))
    assert img.shape == (h, w, 3)
    cls = cv2.imread(str(synth_tiny / "train/cls/001/001_00010.png"), cv2.IMREAD_UNCHANGED)
    assert cls.shape == (h, w, 3) and cls.dtype == np.uint8
    palette = {tuple(c.colour) for c in m.classes}
    colours = {tuple(int(v) for v in c[::-1]) for c in np.unique(cls.reshape(-1, 3), axis=0)}
    assert colours <= palette and len(colours) >= 6


def test_synthia_layout(synth_tiny):
    m = load_manifest("synthia-seq")
    h, w = RESOLUTIONS["tiny"]["synthia-seq"]
    for f in range(10):
        assert _is_png(synth_tiny / m.layout["frame"].format(frame=f))
    label = cv2.imread(str(synth_tiny / m.layout["label"].format(frame=4)), cv2.IMREAD_UNCHANGED)
    assert label.dtype == np.uint16 and label.shape == (h, w, 3)
    ids = set(np.unique(label[..., 2]).tolist())  # red channel = class id
    assert ids <= {c.id for c in m.classes} and {1, 2, 3, 4}.issubset(ids)
    assert label[..., 1].max() > 0  # instance ids in green


def test_cityscapes_layout_with_snippets_labelled_off_frame_19(synth_tiny):
    m = load_manifest("cityscapes-seq")
    for split, city, seq, t in (("train", "aachen", 0, 19), ("val", "frankfurt", 0, 294)):
        frames = sorted((synth_tiny / f"leftImg8bit_sequence/{split}/{city}").glob(f"{city}_{seq:06d}_*_leftImg8bit.png"))
        assert [int(p.name.split("_")[2]) for p in frames] == list(range(t - 19, t + 11))
        labels = list((synth_tiny / f"gtFine/{split}/{city}").glob(f"{city}_{seq:06d}_*_gtFine_labelIds.png"))
        assert [int(p.name.split("_")[2]) for p in labels] == [t]  # only the labelled frame
        ids = cv2.imread(str(labels[0]), cv2.IMREAD_UNCHANGED)
        assert ids.dtype == np.uint8 and ids.ndim == 2
        assert set(np.unique(ids).tolist()) <= {c.id for c in m.classes}
        assert 1 in ids[-1]  # the ego vehicle's hood at the bottom
        assert (labels[0].parent / labels[0].name.replace("labelIds", "color")).is_file()


def test_bdd_layout_and_its_broken_cases(synth_tiny):
    matches = json.loads((synth_tiny / "_truth/bdd/matches.json").read_text())
    statuses = sorted(v["status"] for v in matches.values())
    assert statuses == ["corrupt", "no_video", "ok", "ok", "ok", "truncated"]
    assert any(v["video"] and v["video"].count("/") == 4 for v in matches.values())  # numbered sub-folder
    assert any(v["frame"] != 307 for v in matches.values())
    for vid, info in matches.items():
        image = synth_tiny / f"bdd100k/images/10k/{info['split10k']}/{vid}.jpg"
        mask = synth_tiny / f"bdd100k/labels/sem_seg/masks/{info['split10k']}/{vid}.png"
        assert _is_jpeg(image)
        values = set(np.unique(cv2.imread(str(mask), cv2.IMREAD_UNCHANGED)).tolist())
        assert values <= set(range(19)) | {255}
        videos = list(synth_tiny.glob(f"bdd100k/videos/**/{vid}.mov"))
        if info["status"] == "no_video":
            assert videos == []
            continue
        assert len(videos) == 1
        if info["status"] == "corrupt":
            with pytest.raises(av.error.InvalidDataError):
                av.open(str(videos[0]))
            continue
        decoded = 0
        try:
            with av.open(str(videos[0])) as c:
                stream = c.streams.video[0]
                assert stream.codec_context.name == "h264" and stream.average_rate == 30
                for _ in c.decode(video=0):
                    decoded += 1
        except av.error.FFmpegError:
            pass  # a truncated file may end in an error
        if info["status"] == "ok":
            assert decoded == info["frames_in_video"] > info["frame"]
        else:
            assert decoded <= info["frame"]  # truncated before the labelled frame


def test_label_files_decode_to_train_ids(synth_tiny):
    viper = read_train_ids(load_manifest("viper"), synth_tiny / "train/cls/001/001_00020.png")
    assert set(np.unique(viper).tolist()) <= set(range(19)) | {255}
    assert not {3, 5, 12} & set(np.unique(viper).tolist())  # VIPER has no wall, pole, rider


def test_full_scale_writes_the_real_resolutions_with_the_same_code(tmp_path):
    """`--scale full`: one job per dataset (BDD's 330-frame video is `make paper-check`'s to write) at the
    native sizes, with the paths, formats, dtypes and label encodings of the smaller scales."""
    from flowprep.synth.datasets import run_job
    from flowprep.synth.generate import plan_jobs

    assert RESOLUTIONS["full"] == {"cityscapes-seq": (1024, 2048), "viper": (1080, 1920), "synthia-seq": (760, 1280),
                                   "bdd": (720, 1280)}
    jobs = plan_jobs("full", 0, ["cityscapes-seq", "viper", "synthia-seq", "bdd"])
    bdd = [j for j in jobs if j.dataset == "bdd"]
    assert [j.extra["status"] for j in bdd] == ["ok", "ok"] and all(abs(j.labelled[0] - 307) <= 3 for j in bdd)
    assert all(j.frames == list(range(j.frames[-1] + 1)) for j in bdd)  # a whole video from frame 0
    snippet = next(j for j in jobs if j.dataset == "cityscapes-seq" and j.split == "val")
    assert snippet.frames == [292, 293, 294, 295]  # t-2 .. t+1 of the snippet around frame 294
    viper = next(j for j in jobs if j.dataset == "viper" and j.split == "val")
    assert viper.frames == [8, 9, 10, 11] and viper.labelled == [10]
    for job in (snippet, viper, next(j for j in jobs if j.dataset == "synthia-seq")):
        run_job(job, tmp_path, "full")
    assert _is_jpeg(tmp_path / "val/img/001/001_00009.jpg")
    assert cv2.imread(str(tmp_path / "val/img/001/001_00009.jpg")).shape == (1080, 1920, 3)
    assert cv2.imread(str(tmp_path / "val/cls/001/001_00010.png"), cv2.IMREAD_UNCHANGED).shape == (1080, 1920, 3)
    ids = cv2.imread(str(tmp_path / "gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelIds.png"),
                     cv2.IMREAD_UNCHANGED)
    assert ids.shape == (1024, 2048) and ids.dtype == np.uint8 and 1 in ids[-1]  # ego vehicle at the bottom
    frame = tmp_path / "leftImg8bit_sequence/val/frankfurt/frankfurt_000000_000293_leftImg8bit.png"
    assert _is_png(frame) and cv2.imread(str(frame)).shape == (1024, 2048, 3)
    label = cv2.imread(str(tmp_path / load_manifest("synthia-seq").layout["label"].format(frame=3)), cv2.IMREAD_UNCHANGED)
    assert label.shape == (760, 1280, 3) and label.dtype == np.uint16
    truth = np.load(tmp_path / "_truth/cityscapes-seq/val/frankfurt_000000_000294.npz")
    assert truth["flow_0_-1"].shape == (1024, 2048, 2) and "flow_0_1" in truth and "flow_0_3" not in truth
