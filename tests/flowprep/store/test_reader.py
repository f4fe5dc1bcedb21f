"""The zero-copy reader returns exactly what zarr-python returns, for every array and window."""

import json
import multiprocessing as mp
import pickle

import numpy as np
import pytest
import zarr

from flowprep.errors import StoreError
from flowprep.store import StoreReader, decode_flow

from .conftest import write_store

WINDOWS = [None, (0, 24, 0, 40), (0, 1, 0, 1), (23, 24, 39, 40), (5, 17, 30, 40), (0, 24, 39, 40), (10, 11, 0, 40)]


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("fixture", ["store", "compressed_store"])
def test_windows_are_bit_identical_to_zarr_python(fixture, window, request):
    w = request.getfixturevalue(fixture)
    reader = StoreReader(w.path)
    group = zarr.open_group(w.path, mode="r")
    ys, xs = (slice(None), slice(None)) if window is None else (slice(*window[:2]), slice(*window[2:]))
    for i in range(len(reader)):
        for j, offset in enumerate(reader.frame_offsets):
            got = reader.frame(i, offset, window)
            assert got.dtype == np.uint8
            np.testing.assert_array_equal(got, group["frames"][i, j, ys, xs])
        np.testing.assert_array_equal(reader.label(i, 0, window), group["labels"][i, 0, ys, xs])
        np.testing.assert_array_equal(reader.flow(i, "bwd_1", window), decode_flow(group["flows/bwd_1"][i, ys, xs]))
        np.testing.assert_array_equal(reader.flow_valid(i, "bwd_1", window), group["flow_valid/bwd_1"][i, ys, xs])
        np.testing.assert_array_equal(reader.class_counts(i), group["class_counts"][i])


def test_decoded_flow_is_within_quantisation_of_the_input(store):
    reader = StoreReader(store.path)
    err = np.abs(reader.flow(2, "bwd_1") - store.flows["bwd_1"][2])
    assert err.max() <= 1 / 64 + 1e-5


def test_mapped_windows_are_read_only(store):
    window = StoreReader(store.path).frame(0, 0, (0, 8, 0, 8))
    assert not window.flags.writeable
    with pytest.raises(ValueError):
        window[0, 0, 0] = 1


def test_pickled_reader_carries_only_the_path(store):
    reader = StoreReader(store.path)
    reader.frame(0)  # opens a map
    blob = pickle.dumps(reader)
    assert len(blob) < 500
    clone = pickle.loads(blob)
    np.testing.assert_array_equal(clone.frame(3, -1), store.frames[3, 1])


def _worker_sum(reader, index):
    return int(reader.frame(index, 0).sum())


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_reader_works_in_worker_processes(store, method):
    reader = StoreReader(store.path)
    reader.frame(0)  # the parent holds maps before the workers start
    with mp.get_context(method).Pool(2) as pool:
        sums = pool.starmap(_worker_sum, [(reader, i) for i in range(5)])
    assert sums == [int(store.frames[i, 2].sum()) for i in range(5)]


def test_map_cache_is_bounded(store):
    reader = StoreReader(store.path, max_open=2)
    for i in range(5):
        reader.frame(i, 0)
        reader.label(i)
    assert len(reader._maps) == 2


def test_incomplete_sample_is_an_error_not_fill(tmp_path):
    w = write_store(tmp_path / "s.zarr", samples=[0, 1])
    reader = StoreReader(w.path)
    assert reader.complete().tolist() == [True, True, False, False, False]
    with pytest.raises(StoreError, match="seq002_00020"):
        reader.frame(2)


def test_unknown_offsets_and_pairs_are_errors(store):
    reader = StoreReader(store.path)
    with pytest.raises(StoreError, match="no frame at offset 5"):
        reader.frame(0, 5)
    with pytest.raises(StoreError, match="no flow pair 'fwd_1'"):
        reader.flow(0, "fwd_1")
    with pytest.raises(ValueError, match="not inside"):
        reader.frame(0, 0, (0, 25, 0, 10))


def _edit_json(path, edit):
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


def test_unknown_schema_version_is_a_clear_error(store):
    _edit_json(store.path / "zarr.json", lambda m: m["attributes"]["vda"].update(schema_version=99))
    with pytest.raises(StoreError, match="schema version 99 is not supported"):
        StoreReader(store.path)


def test_unknown_codec_is_a_clear_error(store):
    _edit_json(store.path / "labels/zarr.json", lambda m: m["codecs"].append({"name": "lz4hc-custom"}))
    with pytest.raises(StoreError, match=r"labels/zarr.json: codec 'lz4hc-custom' is unknown"):
        StoreReader(store.path)


def test_not_a_store_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="not a directory"):
        StoreReader(tmp_path / "nothing.zarr")
    zarr.open_group(tmp_path / "plain.zarr", mode="w")
    with pytest.raises(StoreError, match="not a vda-store store"):
        StoreReader(tmp_path / "plain.zarr")


def test_truncated_chunk_is_reported_when_read(store):
    chunk = store.path / "frames/c/2/0/0/0/0"
    chunk.write_bytes(chunk.read_bytes()[:100])
    with pytest.raises(StoreError, match=r"frames/c/2/0/0/0/0: chunk file has 100 bytes"):
        StoreReader(store.path).frame(2, -2)
