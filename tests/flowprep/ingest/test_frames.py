"""`flowprep ingest` on the synthetic replicas: samples, offsets, label maps, split files, reports, resume."""

import shutil
import signal

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from flowprep.cli import cli
from flowprep.errors import FlowprepError
from flowprep.ingest.frames import parse_split_file
from flowprep.manifest import load_manifest
from flowprep.store import StoreReader
from flowprep.store.verify import verify_store


def copy_replica(synth_tiny, root, *folders):
    """Folders of the tiny replica under `root`, with the record that declares its scale's resolutions."""
    for folder in folders:
        shutil.copytree(synth_tiny / folder, root / folder)
    (root / "_truth").mkdir(parents=True, exist_ok=True)
    shutil.copy(synth_tiny / "_truth/synth.json", root / "_truth/synth.json")


def ingest(*args):
    return CliRunner().invoke(cli, ["ingest", *map(str, args)])


def test_viper_samples_are_every_tenth_frame_with_the_previous_two(synth_tiny, tmp_path):
    result = ingest("viper", "--root", synth_tiny, "--split", "train", "--out", tmp_path / "v.zarr", "--workers", 1)
    assert result.exit_code == 0, result.output
    r = StoreReader(tmp_path / "v.zarr")
    assert r.sample_ids == ["001_00010", "001_00020", "002_00010", "002_00020"]
    assert r.frame_offsets == [-2, -1, 0] and r.label_offsets == [-2, -1, 0]  # VIPER labels every frame
    frame = cv2.imread(str(synth_tiny / "train/img/002/002_00019.jpg"))[..., ::-1]
    np.testing.assert_array_equal(r.frame(3, -1), frame)
    # frame 00000 has no t-1, t-2: excluded with a reason, reported
    assert "001_00000: missing frame t-2: before the first frame of the sequence" in result.output
    assert r.attrs["ingest"]["excluded"][0]["reason"] == "missing frame t-2"


def test_viper_label_map_including_the_van_train_colour(synth_tiny, tmp_path):
    root = tmp_path / "raw"
    copy_replica(synth_tiny, root, "train")
    label_file = root / "train/cls/001/001_00010.png"
    cls = cv2.imread(str(label_file))
    cls[:4, :4] = (100, 80, 0)  # van (0, 80, 100) in BGR: shares its colour with train
    cls[4:8, :4] = (153, 153, 153)  # infrastructure: no trainId
    cls[8:12, :4] = (35, 182, 87)  # tree -> vegetation
    cv2.imwrite(str(label_file), cls)
    result = ingest("viper", "--root", root, "--out", tmp_path / "v.zarr", "--workers", 1)
    assert result.exit_code == 0, result.output
    label = StoreReader(tmp_path / "v.zarr").label(0)
    assert (label[:4, :4] == 16).all() and (label[4:8, :4] == 255).all() and (label[8:12, :4] == 8).all()


def test_synthia_bicycle_is_rider_and_lane_marking_is_ignored(synth_tiny, tmp_path):
    root = tmp_path / "raw"
    copy_replica(synth_tiny, root, "SYNTHIA-SEQS-04-DAWN")
    label_file = root / "SYNTHIA-SEQS-04-DAWN/GT/LABELS/Stereo_Left/Omni_F/000005.png"
    lab = cv2.imread(str(label_file), cv2.IMREAD_UNCHANGED)
    lab[:2, :2, 2], lab[2:4, :2, 2], lab[4:6, :2, 2] = 11, 12, 8  # bicycle, lane marking, car (red channel)
    cv2.imwrite(str(label_file), lab)
    result = ingest("synthia-seq", "--root", root, "--out", tmp_path / "s.zarr", "--workers", 1)
    assert result.exit_code == 0, result.output
    r = StoreReader(tmp_path / "s.zarr")
    assert r.sample_ids == [f"{t:06d}" for t in range(2, 10)]
    label = r.label(r.sample_ids.index("000005"))
    assert (label[:2, :2] == 12).all() and (label[2:4, :2] == 255).all() and (label[4:6, :2] == 13).all()


def test_synthia_has_no_val_split_without_a_split_file(synth_tiny, tmp_path):
    result = ingest("synthia-seq", "--root", synth_tiny, "--split", "val", "--out", tmp_path / "s.zarr")
    assert result.exit_code == 2 and "no 'val' split" in result.output


def test_cityscapes_t_comes_from_the_gtfine_name(synth_tiny, tmp_path):
    result = ingest("cityscapes-seq", "--root", synth_tiny, "--split", "val", "--out", tmp_path / "c.zarr",
                    "--offsets=-2,-1,0,1", "--workers", 2)
    assert result.exit_code == 0, result.output
    r = StoreReader(tmp_path / "c.zarr")
    assert r.sample_ids == ["frankfurt_000000_000294", "lindau_000000_000019"]
    assert r.frame_offsets == [-2, -1, 0, 1] and r.label_offsets == [0]
    for offset, frame in ((-2, 292), (1, 295)):
        png = synth_tiny / f"leftImg8bit_sequence/val/frankfurt/frankfurt_000000_{frame:06d}_leftImg8bit.png"
        np.testing.assert_array_equal(r.frame(0, offset), cv2.imread(str(png))[..., ::-1])
    ids = cv2.imread(str(synth_tiny / "gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelIds.png"), cv2.IMREAD_UNCHANGED)
    lut = load_manifest("cityscapes-seq").train_id_lut()
    np.testing.assert_array_equal(r.label(0), lut[ids])
    assert (r.label(0)[ids == 26] == 13).all() and (r.label(0)[ids == 1] == 255).all()  # car; ego vehicle ignored
    counts = r.class_counts(0)
    assert counts.sum() == (r.label(0) != 255).sum()
    assert verify_store(tmp_path / "c.zarr").ok


@pytest.mark.parametrize("dataset,lines,expected", [
    ("cityscapes-seq", ["aachen/aachen_000000_000019", "aachen_000001_000019_leftImg8bit.png"],
     ["aachen_000000_000019", "aachen_000001_000019"]),
    ("viper", ["001/001_00010", "# comment", "", "002_00020"], ["001_00010", "002_00020"]),
    ("synthia-seq", ["000123", "000004.png"], ["000123", "000004"]),
])
def test_split_files_in_the_reference_formats(tmp_path, dataset, lines, expected):
    f = tmp_path / "split.txt"
    f.write_text("\n".join(lines))
    assert parse_split_file(f, load_manifest(dataset)) == expected


def test_a_bad_split_file_line_is_an_error_naming_the_line(tmp_path):
    f = tmp_path / "split.txt"
    f.write_text("001/001_00010\nnot-an-id\n")
    with pytest.raises(FlowprepError, match=r"split.txt:2: 'not-an-id' is not a viper sample id"):
        parse_split_file(f, load_manifest("viper"))


def test_split_file_selects_samples_and_reports_unknown_ones(synth_tiny, tmp_path):
    f = tmp_path / "split.txt"
    f.write_text("001/001_00020\n003/003_00010\n")
    result = ingest("viper", "--root", synth_tiny, "--split-file", f, "--out", tmp_path / "v.zarr")
    assert result.exit_code == 0
    assert StoreReader(tmp_path / "v.zarr").sample_ids == ["001_00020"]
    assert "003_00010: not found: listed in the split file, no label file" in result.output


def test_a_corrupt_frame_excludes_its_sample_and_nothing_else(synth_tiny, tmp_path):
    root = tmp_path / "raw"
    copy_replica(synth_tiny, root, "train")
    (root / "train/img/002/002_00019.jpg").write_bytes(b"not a jpeg")
    result = ingest("viper", "--root", root, "--out", tmp_path / "v.zarr", "--workers", 1)
    assert result.exit_code == 0
    r = StoreReader(tmp_path / "v.zarr")
    assert r.complete().tolist() == [True, True, True, False]
    assert "002_00020: unreadable input:" in result.output and "002_00019.jpg: not a readable image" in result.output


def test_a_frame_of_another_size_excludes_its_sample_and_the_ingest_goes_on(synth_tiny, tmp_path):
    root = tmp_path / "raw"
    copy_replica(synth_tiny, root, "train")
    odd = root / "train/img/002/002_00018.jpg"
    cv2.imwrite(str(odd), cv2.resize(cv2.imread(str(odd)), (101, 57)))
    result = ingest("viper", "--root", root, "--out", tmp_path / "v.zarr", "--workers", 2)
    assert result.exit_code == 0, result.output
    assert StoreReader(tmp_path / "v.zarr").complete().tolist() == [True, True, True, False]
    assert f"002_00020: size mismatch: {odd}: size 101x57 differs from the dataset's" in result.output


def test_an_odd_first_image_changes_nothing_but_its_own_sample(synth_tiny, tmp_path):
    """The store's size is the dataset's (the manifest's, or the replica's declared), never the first image's:
    a first sample whose frame t is another size (or unreadable) is a reported skip; the others ingest."""
    root = tmp_path / "raw"
    copy_replica(synth_tiny, root, "train")
    first = root / "train/img/001/001_00010.jpg"
    cv2.imwrite(str(first), cv2.resize(cv2.imread(str(first)), (256, 144)))
    result = ingest("viper", "--root", root, "--out", tmp_path / "v.zarr", "--workers", 1)
    assert result.exit_code == 0, result.output
    r = StoreReader(tmp_path / "v.zarr")
    assert r.resolution == (72, 128) and r.complete().tolist() == [False, True, True, True]
    assert "001_00010: size mismatch" in result.output
    first.write_bytes(b"not a jpeg either")
    again = ingest("viper", "--root", root, "--out", tmp_path / "w.zarr", "--workers", 1)
    assert again.exit_code == 0 and "001_00010: unreadable input" in again.output


def test_a_grey_palette_label_png_is_read_as_its_indices(synth_tiny, tmp_path):
    """A labelIds PNG saved with a palette (grey, so OpenCV would expand it to 3 channels): the indices are the
    ids; the store gets the same trainIds as from the plain single-channel file."""
    from PIL import Image

    root = tmp_path / "raw"
    copy_replica(synth_tiny, root, "gtFine", "leftImg8bit_sequence")
    label = next((root / "gtFine/val").rglob("*_labelIds.png"))
    ids = cv2.imread(str(label), cv2.IMREAD_UNCHANGED)
    assert ingest("cityscapes-seq", "--root", root, "--split", "val", "--out", tmp_path / "a.zarr",
                  "--workers", 1).exit_code == 0
    img = Image.fromarray(ids, mode="L").convert("P")
    img.putpalette([v for g in range(256) for v in (g, g, g)])
    img.save(label)
    assert Image.open(label).mode == "P" and cv2.imread(str(label), cv2.IMREAD_UNCHANGED).ndim == 3
    result = ingest("cityscapes-seq", "--root", root, "--split", "val", "--out", tmp_path / "b.zarr", "--workers", 1)
    assert result.exit_code == 0, result.output
    a, b = StoreReader(tmp_path / "a.zarr"), StoreReader(tmp_path / "b.zarr")
    assert b.complete().all()
    for i in range(len(a)):
        np.testing.assert_array_equal(a.label(i), b.label(i))


def test_nothing_usable_and_bad_arguments_exit_2(synth_tiny, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = ingest("viper", "--root", empty, "--out", tmp_path / "v.zarr")
    assert result.exit_code == 2 and "no viper label files match" in result.output
    result = ingest("viper", "--root", synth_tiny, "--out", tmp_path / "v.zarr", "--offsets=-1,-2")
    assert result.exit_code == 2 and "must include 0" in result.output


def test_a_killed_ingest_resumes_to_the_same_store(synth_tiny, tmp_path, run_killed):
    out = tmp_path / "killed.zarr"
    proc = run_killed("flowprep.store.writer:StoreWriter.write_sample", 3,
                      "ingest", "viper", "--root", synth_tiny, "--out", out, "--workers", 1)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert StoreReader(out).complete().sum() == 2
    result = ingest("viper", "--root", synth_tiny, "--out", out, "--workers", 1)
    assert result.exit_code == 0 and "(2 written now)" in result.output
    clean = tmp_path / "clean.zarr"
    assert ingest("viper", "--root", synth_tiny, "--out", clean, "--workers", 1).exit_code == 0
    files = lambda root: {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
                          if p.is_file() and p.name != "zarr.json"}
    assert files(out) == files(clean)
    assert verify_store(out).ok
