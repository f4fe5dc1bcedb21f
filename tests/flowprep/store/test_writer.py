"""The writer: what lands on disk is plain zarr v3, complete samples are recorded, and re-runs are safe."""

import json
import os

import numpy as np
import pytest
import zarr

from flowprep.errors import StoreError
from flowprep.store import FLOW_SCALE, StoreWriter, create_store, decode_flow, encode_flow, pair_name, pair_offsets

from .conftest import CLASSES, sample_data, spec_for, write_store


@pytest.mark.parametrize("fixture", ["store", "compressed_store"])
def test_plain_zarr_reads_back_what_was_written(fixture, request):
    w = request.getfixturevalue(fixture)
    group = zarr.open_group(w.path, mode="r")
    np.testing.assert_array_equal(group["frames"][:], w.frames)
    np.testing.assert_array_equal(group["labels"][:], w.labels)
    np.testing.assert_array_equal(group["flows/bwd_1"][:], encode_flow(w.flows["bwd_1"])[0])
    np.testing.assert_array_equal(group["flow_valid/bwd_1"][:], w.valid["bwd_1"])
    assert group["frames"].metadata.dimension_names == ("sample", "frame", "y", "x", "rgb")
    assert group["flows/bwd_1"].metadata.dimension_names == ("sample", "y", "x", "uv")


def test_class_counts_are_computed_from_the_label_of_t(store):
    counts = zarr.open_group(store.path, mode="r")["class_counts"][:]
    for i in range(len(counts)):
        expected = [(store.labels[i, 0] == c).sum() for c in range(len(CLASSES))]
        assert counts[i].tolist() == expected


def test_group_attributes_describe_the_store(store):
    attrs = zarr.open_group(store.path, mode="r").attrs["vda"]
    assert attrs["schema_version"] == 1
    assert attrs["frame_offsets"] == [-2, -1, 0]
    assert attrs["resolution"] == [24, 40]
    assert attrs["flows"]["bwd_1"]["from_offset"] == 0 and attrs["flows"]["bwd_1"]["to_offset"] == -1
    assert attrs["flows"]["bwd_1"]["units"] == "px"
    assert attrs["provenance"][0]["stage"] == "test"


def test_uncompressed_chunk_files_are_raw_bytes_and_exist_even_when_all_zero(store):
    chunk = store.path / "frames" / "c" / "1" / "0" / "0" / "0" / "0"
    assert chunk.read_bytes() == store.frames[1, 0].tobytes()
    meta = json.loads((store.path / "flows/bwd_1/zarr.json").read_text())
    assert meta["codecs"] == [{"name": "bytes", "configuration": {"endian": "little"}}]


def test_flow_encoding_error_is_at_most_a_64th_of_a_pixel():
    rng = np.random.default_rng(1)
    flow = rng.uniform(-1023.9, 1023.9, (1000, 2)).astype(np.float32)
    encoded, ok = encode_flow(flow)
    assert ok.all()
    assert np.abs(decode_flow(encoded) - flow).max() <= 1 / (2 * FLOW_SCALE) + 1e-4


def test_unrepresentable_flow_is_marked_invalid_not_wrapped():
    flow = np.array([[[1500.0, 0.0], [np.nan, 1.0], [-3.5, 2.25]]], dtype=np.float32)
    encoded, ok = encode_flow(flow)
    assert ok.tolist() == [[False, False, True]]
    assert decode_flow(encoded)[0, 0, 0] == pytest.approx(32767 / 32)  # saturated, never wrapped to negative
    assert decode_flow(encoded)[0, 2].tolist() == [-3.5, 2.25]


def test_pair_names():
    assert pair_name(0, -1) == "bwd_1"
    assert pair_name(0, 2) == "fwd_2"
    assert pair_name(-1, -2) == "bwd_1_at_m1"
    for src, dst in [(0, -1), (0, 2), (-1, -2), (3, 13), (0, 10)]:
        assert pair_offsets(pair_name(src, dst)) == (src, dst)
    with pytest.raises(StoreError, match="'bwd_0' is not a flow pair name"):
        pair_offsets("bwd_0")


def test_rerun_skips_complete_samples_and_reopening_is_idempotent(tmp_path):
    w = write_store(tmp_path / "s.zarr", samples=[0, 2])
    create_store(w.path, spec_for(5, 24, 40), provenance={"stage": "test", "command": "pytest"})
    writer = StoreWriter(w.path)
    assert [writer.is_complete(i) for i in range(5)] == [True, False, True, False, False]
    attrs = zarr.open_group(w.path, mode="r").attrs["vda"]
    assert len(attrs["provenance"]) == 1  # the same command resumed is recorded once


def test_reopening_with_another_layout_is_an_error(tmp_path):
    write_store(tmp_path / "s.zarr", n=3)
    with pytest.raises(StoreError, match="different layout"):
        create_store(tmp_path / "s.zarr", spec_for(4, 24, 40))


def test_a_non_empty_directory_is_not_overwritten(tmp_path):
    (tmp_path / "x.zarr").mkdir()
    (tmp_path / "x.zarr" / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="not empty"):
        create_store(tmp_path / "x.zarr", spec_for(2, 8, 8))


def test_creating_a_store_keeps_the_directory_other_processes_lock_on(tmp_path):
    # Parallel workers serialise create_store with a lock on the store directory;
    # if creating replaced that directory, a waiting worker would lock a new one
    # and race the first (seen as "array exists" from a CI run).
    root = tmp_path / "s.zarr"
    root.mkdir()
    fd = os.open(root, os.O_RDONLY)  # an open handle keeps the old inode from being reused
    try:
        create_store(root, spec_for(2, 8, 8))
        assert os.path.samestat(os.fstat(fd), os.stat(root))
    finally:
        os.close(fd)


def test_bad_samples_are_errors_naming_the_sample(tmp_path):
    w = write_store(tmp_path / "s.zarr", n=2, samples=[])
    writer = StoreWriter(w.path)
    frames, labels, _, _ = sample_data(2, 24, 40)
    bad = labels[0].copy()
    bad[0, 5, 5] = 17
    with pytest.raises(StoreError, match=r"seq000_00000.*\[17\]"):
        writer.write_sample(0, frames[0], bad)
    with pytest.raises(StoreError, match="frames must be uint8"):
        writer.write_sample(0, frames[0][..., :2], labels[0])
    with pytest.raises(StoreError, match="not declared"):
        writer.write_flow(0, "fwd_1", np.zeros((24, 40, 2)), None)
    assert not writer.is_complete(0)


def test_a_flow_to_a_frame_the_store_does_not_hold_is_an_error(store):
    from flowprep.store import add_flow

    with pytest.raises(StoreError, match=r"frame offset 1 is not stored \(store has \[-2, -1, 0\]\)"):
        add_flow(store.path, 0, 1)
