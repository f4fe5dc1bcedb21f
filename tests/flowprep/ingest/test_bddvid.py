"""`flowprep build-bddvid` on the BDD replica: matched frames, orientation, and every broken case reported."""

import json
import shutil

import av
import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from flowprep.cli import cli
from flowprep.ingest.bddvid import match_video, parse_bdd_split_file, split_of, Unusable
from flowprep.store import StoreReader


def build(*args):
    return CliRunner().invoke(cli, ["build-bddvid", *map(str, args)])


@pytest.fixture(scope="module")
def truth(synth_tiny):
    return json.loads((synth_tiny / "_truth/bdd/matches.json").read_text())


@pytest.fixture(scope="module")
def all_ids_store(synth_tiny, truth, tmp_path_factory):
    split = tmp_path_factory.mktemp("bdd") / "split.txt"
    split.write_text("".join(f"{vid}_307\n" for vid in truth))
    out = split.parent / "bddvid.zarr"
    result = build("--bdd10k", synth_tiny, "--bdd100k", synth_tiny / "bdd100k/videos", "--out", out,
                   "--split-file", split, "--from-splits", "train,val", "--workers", 2)
    return out, result


def test_matched_frame_is_the_one_the_image_was_cut_from(all_ids_store, truth):
    out, result = all_ids_store
    assert result.exit_code == 0, result.output
    r = StoreReader(out)
    ok = sorted(v for v, info in truth.items() if info["status"] == "ok")
    assert [r.sample_ids[i] for i in np.flatnonzero(r.complete())] == ok
    for vid in ok:
        i = r.sample_ids.index(vid)
        frame, score, margin, rotation, contrast = r.extra(i, "match")
        assert frame == truth[vid]["frame"] and rotation == 0 and score < 5 and margin > 0 and contrast > 0.5
        assert r.attrs["ingest"]["samples"][vid]["frame"] == truth[vid]["frame"]


def test_broken_ids_are_excluded_with_their_reason(all_ids_store, truth):
    out, result = all_ids_store
    reasons = {e["sample"]: e["reason"] for e in StoreReader(out).attrs["ingest"]["excluded"]}
    expected = {"no_video": "no video", "truncated": "truncated video", "corrupt": "unreadable video"}
    assert reasons == {v: expected[info["status"]] for v, info in truth.items() if info["status"] != "ok"}
    assert "| truncated video | 1 |" in result.output


def test_training_frames_come_from_the_video_and_evaluation_uses_the_bdd10k_image(all_ids_store, truth, synth_tiny):
    out, _ = all_ids_store
    r = StoreReader(out)
    assert r.frame_offsets == [-4, -2, 0]
    vid = next(v for v in r.sample_ids if truth[v]["status"] == "ok")
    i = r.sample_ids.index(vid)
    image = cv2.imread(str(synth_tiny / f"bdd100k/images/10k/{truth[vid]['split10k']}/{vid}.jpg"))[..., ::-1]
    np.testing.assert_array_equal(r.extra(i, "eval_image"), image)
    label = cv2.imread(str(synth_tiny / f"bdd100k/labels/sem_seg/masks/{truth[vid]['split10k']}/{vid}.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(r.label(i), label)
    video = next(synth_tiny.glob(f"bdd100k/videos/**/{vid}.mov"))
    with av.open(str(video)) as c:
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    n = truth[vid]["frame"]
    for offset in (-4, -2, 0):
        np.testing.assert_array_equal(r.frame(i, offset), decoded[n + offset])


def _rotated_copy(src, dst):
    """Re-encode `src` with every frame turned a quarter counter-clockwise (a portrait video)."""
    with av.open(str(src)) as c:
        frames = [np.ascontiguousarray(np.rot90(f.to_ndarray(format="rgb24"))) for f in c.decode(video=0)]
    with av.open(str(dst), "w", format="mov") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt, stream.options = "yuv420p", {"crf": "18"}
        for f in frames:
            for p in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(p)
        for p in stream.encode():
            out.mux(p)


def test_orientation_is_checked_against_the_image(synth_tiny, truth, tmp_path):
    vid = next(v for v, info in truth.items() if info["status"] == "ok")
    image = cv2.imread(str(synth_tiny / f"bdd100k/images/10k/{truth[vid]['split10k']}/{vid}.jpg"))[..., ::-1]
    _rotated_copy(next(synth_tiny.glob(f"bdd100k/videos/**/{vid}.mov")), tmp_path / "portrait.mov")
    m = match_video(tmp_path / "portrait.mov", image, search=(300, 315))
    assert m.frame == truth[vid]["frame"] and m.rotation == 3  # three more quarter turns restore it
    assert m.frames.shape[1:3] == image.shape[:2]


def _image(root, truth, vid):
    return cv2.imread(str(root / f"bdd100k/images/10k/{truth[vid]['split10k']}/{vid}.jpg"))[..., ::-1]


def _reencoded(src, dst, keep=None, crf="28", skip_timestamp_at=None):
    """Re-encode `src` (the frames `keep` selects, default all) as H.264 at `crf`; `skip_timestamp_at`: from that
    frame on, every frame's timestamp is one frame later (a variable-frame-rate drop: no frame is missing)."""
    from fractions import Fraction

    with av.open(str(src)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    frames = frames if keep is None else frames[keep]
    with av.open(str(dst), "w", format="mov") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt, stream.options = "yuv420p", {"crf": crf, "threads": "1"}
        stream.codec_context.time_base = Fraction(1, 30)
        for i, f in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(f, format="rgb24")
            frame.pts = i + (1 if skip_timestamp_at is not None and i >= skip_timestamp_at else 0)
            frame.time_base = Fraction(1, 30)
            for p in stream.encode(frame):
                out.mux(p)
        for p in stream.encode():
            out.mux(p)
    return dst


def test_a_video_of_another_drive_does_not_match_even_under_a_loose_error_threshold(synth_tiny, truth):
    """Calibration on the replica (docs/ingest.md): other drives score 11-23 grey levels, and their best frame
    does not stand out from the window (contrast <= 0.42); true matches score ~2.5 with contrast >= 0.62."""
    ok = [v for v, info in truth.items() if info["status"] == "ok"]
    for a in ok:
        for b in ok:
            video = next(synth_tiny.glob(f"bdd100k/videos/**/{b}.mov"))
            if a == b:
                assert match_video(video, _image(synth_tiny, truth, a), max_error=100).frame == truth[a]["frame"]
                continue
            with pytest.raises(Unusable, match="no distinct frame: .* does not stand out"):
                match_video(video, _image(synth_tiny, truth, a), max_error=100)
    with pytest.raises(Unusable, match="no matching frame: .* differs by"):  # the absolute test still applies
        match_video(next(synth_tiny.glob(f"bdd100k/videos/**/{ok[1]}.mov")), _image(synth_tiny, truth, ok[0]),
                    max_error=6.0)


def test_a_video_cut_before_the_true_frame_is_truncated_never_matched(synth_tiny, truth, tmp_path):
    vid = next(v for v, info in truth.items() if info["status"] == "ok")
    n = truth[vid]["frame"]
    cut = _reencoded(next(synth_tiny.glob(f"bdd100k/videos/**/{vid}.mov")), tmp_path / "cut.mov",
                     keep=slice(0, n - 6), crf="18")
    with pytest.raises(Unusable, match=f"truncated video: .* decoding ends at frame {n - 7}"):
        match_video(cut, _image(synth_tiny, truth, vid))


def test_a_skipped_timestamp_shifts_no_frame_number_and_a_cut_video_is_still_truncated(synth_tiny, truth, tmp_path):
    """Frames are numbered by their place in presentation order (the reference's decode count): a timestamp
    skipped at frame 290 (timestamp x rate would number the true frame one too high) still gives the true frame."""
    vid = next(v for v, info in truth.items() if info["status"] == "ok")
    src = next(synth_tiny.glob(f"bdd100k/videos/**/{vid}.mov"))
    gap = _reencoded(src, tmp_path / "gap.mov", crf="18", skip_timestamp_at=290)
    with av.open(str(gap)) as c:  # the file really has the gap
        stamps = [f.pts for f in c.decode(video=0)]
    assert len(set(b - a for a, b in zip(stamps, stamps[1:]))) == 2
    assert match_video(gap, _image(synth_tiny, truth, vid)).frame == truth[vid]["frame"]


def test_a_re_encoded_video_still_matches_its_frame(synth_tiny, truth, tmp_path):
    for vid in [v for v, info in truth.items() if info["status"] == "ok"]:
        copy = _reencoded(next(synth_tiny.glob(f"bdd100k/videos/**/{vid}.mov")), tmp_path / f"{vid}.mov")
        m = match_video(copy, _image(synth_tiny, truth, vid))
        assert m.frame == truth[vid]["frame"] and m.contrast >= 0.5


def test_match_records_survive_a_killed_build(synth_tiny, truth, tmp_path, run_killed):
    """Killed while writing the third sample: the two before it keep their records on the re-run."""
    ok = sorted(v for v, info in truth.items() if info["status"] == "ok")
    split = tmp_path / "split.txt"
    split.write_text("".join(f"{v}\n" for v in ok))
    args = ["build-bddvid", "--bdd10k", synth_tiny, "--bdd100k", synth_tiny, "--out", tmp_path / "k.zarr",
            "--split-file", split, "--from-splits", "train,val", "--workers", 1]
    killed = run_killed("flowprep.store.writer:StoreWriter.write_sample", 3, *args)
    assert killed.returncode == -9
    r = StoreReader(tmp_path / "k.zarr")
    assert r.complete().sum() == 2 and "ingest" not in r.attrs  # the report is written at the end
    assert build(*args[1:]).exit_code == 0
    samples = StoreReader(tmp_path / "k.zarr").attrs["ingest"]["samples"]
    assert sorted(samples) == ok and all(samples[v]["frame"] == truth[v]["frame"] for v in ok)


def test_an_unlabelled_bdd10k_image_is_reported(synth_tiny, truth, tmp_path):
    root = tmp_path / "raw"
    shutil.copytree(synth_tiny / "bdd100k/images", root / "bdd100k/images")
    shutil.copytree(synth_tiny / "bdd100k/labels", root / "bdd100k/labels")
    shutil.copytree(synth_tiny / "_truth", root / "_truth")  # the replica's declared resolutions
    vid = next(v for v, info in truth.items() if info["status"] == "ok")
    label = root / f"bdd100k/labels/sem_seg/masks/{truth[vid]['split10k']}/{vid}.png"
    label.unlink()
    result = build("--bdd10k", root, "--bdd100k", synth_tiny, "--out", tmp_path / "u.zarr", "--split",
                   split_of(vid), "--from-splits", "train,val", "--workers", 1)
    excluded = {e["sample"]: e for e in StoreReader(tmp_path / "u.zarr").attrs["ingest"]["excluded"]}
    assert excluded[vid]["reason"] == "no label" and str(label) in excluded[vid]["detail"]
    assert "| no label | 1 |" in result.output


def test_default_split_rule_and_split_file_format(synth_tiny, truth, tmp_path):
    result = build("--bdd10k", synth_tiny / "bdd100k", "--bdd100k", synth_tiny, "--out", tmp_path / "t.zarr",
                   "--from-splits", "train,val", "--workers", 1)
    assert result.exit_code == 0, result.output
    expected = sorted(v for v, info in truth.items() if info["status"] != "no_video" and split_of(v) == "train")
    assert StoreReader(tmp_path / "t.zarr").sample_ids == expected
    f = tmp_path / "s.txt"
    f.write_text("53f06672-e942bc38_307\n# note\nabcdef01-23456789\n")
    assert parse_bdd_split_file(f) == ["53f06672-e942bc38", "abcdef01-23456789"]


def test_nothing_usable_exits_2(synth_tiny, truth, tmp_path):
    f = tmp_path / "broken.txt"
    f.write_text("".join(f"{v}\n" for v, info in truth.items() if info["status"] in ("truncated", "corrupt")))
    result = build("--bdd10k", synth_tiny, "--bdd100k", synth_tiny, "--out", tmp_path / "b.zarr",
                   "--split-file", f, "--from-splits", "train,val", "--workers", 1)
    assert result.exit_code == 2 and "no sample could be written" in result.output
    assert not (tmp_path / "b.zarr").exists()  # nothing half-made is left


def test_older_bdd10k_layout_is_read_too(synth_tiny, truth, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(synth_tiny / "_truth", old / "_truth")  # the replica's declared resolutions
    for vid, info in truth.items():
        src = info["split10k"]
        (old / f"bdd100k/seg/images/{src}").mkdir(parents=True, exist_ok=True)
        (old / f"bdd100k/seg/labels/{src}").mkdir(parents=True, exist_ok=True)
        shutil.copy(synth_tiny / f"bdd100k/images/10k/{src}/{vid}.jpg", old / f"bdd100k/seg/images/{src}/{vid}.jpg")
        shutil.copy(synth_tiny / f"bdd100k/labels/sem_seg/masks/{src}/{vid}.png",
                    old / f"bdd100k/seg/labels/{src}/{vid}_train_id.png")
    ok = [v for v, info in truth.items() if info["status"] == "ok"]
    f = tmp_path / "s.txt"
    f.write_text("\n".join(ok))
    result = build("--bdd10k", old, "--bdd100k", synth_tiny, "--out", tmp_path / "o.zarr", "--split-file", f,
                   "--from-splits", "train,val", "--workers", 1)
    assert result.exit_code == 0, result.output
    assert StoreReader(tmp_path / "o.zarr").complete().all()


def test_a_frame_outside_the_first_narrow_scan_is_found_by_widening(synth_tiny, truth):
    vid = next(v for v, info in truth.items() if info["status"] == "ok")
    image = cv2.imread(str(synth_tiny / f"bdd100k/images/10k/{truth[vid]['split10k']}/{vid}.jpg"))[..., ::-1]
    video = next(synth_tiny.glob(f"bdd100k/videos/**/{vid}.mov"))
    m = match_video(video, image, search=(260, 315), expected=270)  # first scan 260..280 misses it
    assert m.frame == truth[vid]["frame"]


def test_an_exif_orientation_tag_rotates_nothing_and_the_image_matches_its_video(synth_tiny, truth, tmp_path):
    """A BDD10k JPEG carrying EXIF Orientation=6 (rotate 90 deg) over pixels that are already upright: read as the
    stored pixel array, it keeps its 1280x720-like size, matches its video and is the store's eval image."""
    from PIL import Image

    root = tmp_path / "raw"
    for folder in ("bdd100k/images", "bdd100k/labels", "_truth"):
        shutil.copytree(synth_tiny / folder, root / folder)
    vid = next(v for v, info in truth.items() if info["status"] == "ok")
    jpg = root / f"bdd100k/images/10k/{truth[vid]['split10k']}/{vid}.jpg"
    pixels = np.array(Image.open(jpg))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    Image.fromarray(pixels).save(jpg, quality=95, exif=exif)
    assert Image.open(jpg).getexif()[0x0112] == 6
    result = build("--bdd10k", root, "--bdd100k", synth_tiny, "--out", tmp_path / "e.zarr", "--split",
                   split_of(vid), "--from-splits", "train,val", "--workers", 1)
    assert result.exit_code == 0, result.output
    r = StoreReader(tmp_path / "e.zarr")
    i = r.sample_ids.index(vid)
    assert r.complete()[i] and r.attrs["ingest"]["samples"][vid]["frame"] == truth[vid]["frame"]
    stored = np.asarray(r.extra(i, "eval_image"))
    assert stored.shape == pixels.shape and np.abs(stored.astype(int) - pixels.astype(int)).mean() < 2
