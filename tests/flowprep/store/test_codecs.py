"""Codecs per array: frames raw (memory-mapped), labels and masks zstd, flows raw or blosc-lz4; recorded in the
store, read the same by our reader and by plain zarr, sized by `flowprep inspect`."""

import json

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from flowprep.cli import cli
from flowprep.errors import StoreError
from flowprep.store import StoreReader
from flowprep.store import layout as L


def _codecs(path, array):
    return [c["name"] for c in json.loads((path / array / "zarr.json").read_text())["codecs"]]


def test_by_default_frames_and_flows_are_raw_and_labels_and_masks_zstd(store):
    root = store.path
    assert _codecs(root, "frames") == ["bytes"] and _codecs(root, "flows/bwd_1") == ["bytes"]
    assert _codecs(root, "labels") == ["bytes", "zstd"] and _codecs(root, "flow_valid/bwd_1") == ["bytes", "zstd"]
    assert L.read_store_attrs(root)["codecs"] == {"frames": "raw", "labels": "zstd", "flows": "raw",
                                                  "flow_valid": "zstd"}
    reader = StoreReader(root)
    assert not reader.frame(0, 0).flags.writeable  # still a map


@pytest.mark.parametrize("fixture", ["store", "blosc_store", "compressed_store"])
def test_our_reader_and_plain_zarr_read_the_same_values(fixture, request):
    written = request.getfixturevalue(fixture)
    reader, group = StoreReader(written.path), zarr.open_group(written.path, mode="r")
    window = (3, 20, 5, 33)
    ys, xs = slice(3, 20), slice(5, 33)
    for i in range(len(reader)):
        np.testing.assert_array_equal(reader.label(i, 0, window), group["labels"][i, 0, ys, xs])
        np.testing.assert_array_equal(reader.label(i, 0, window), written.labels[i, 0, ys, xs])
        np.testing.assert_array_equal(reader.flow_fixed(i, "bwd_1", window), group["flows/bwd_1"][i, ys, xs])
        np.testing.assert_array_equal(reader.flow_valid(i, "bwd_1", window), group["flow_valid/bwd_1"][i, ys, xs])
        np.testing.assert_array_equal(reader.frame(i, -1, window), written.frames[i, 1, ys, xs])


def test_the_flow_codec_is_recorded_and_followed_by_new_pairs(blosc_store):
    from flowprep.store import add_flow

    root = blosc_store.path
    assert _codecs(root, "flows/bwd_1") == ["bytes", "blosc"]
    assert L.read_store_attrs(root)["codecs"]["flows"] == "blosc-lz4"
    add_flow(root, 0, -2)
    assert _codecs(root, "flows/bwd_2") == ["bytes", "blosc"]
    add_flow(root, -1, -2, codec="raw")  # the flow job's --codec wins for arrays it creates
    assert _codecs(root, "flows/bwd_1_at_m1") == ["bytes"]


def test_a_damaged_compressed_chunk_is_one_error_naming_the_file(store):
    meta = L.read_array_meta(store.path, "labels")
    chunk = store.path / meta.chunk_key((2, 0, 0, 0))
    chunk.write_bytes(b"\x00" * 40)
    with pytest.raises(StoreError, match=r"labels/c/2/0/0/0: cannot be decoded as zstd"):
        StoreReader(store.path).label(2)


def test_inspect_shows_bytes_per_sample_and_projects_a_size(store):
    result = CliRunner().invoke(cli, ["inspect", str(store.path), "--project", "1000"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "codecs: frames raw, labels zstd, flows raw, flow_valid zstd" in out
    assert "per sample" in out and "projected    1000 samples:" in out
    d = json.loads(CliRunner().invoke(cli, ["inspect", str(store.path), "--json", "--project", "1000"]).stdout)
    frames = next(a for a in d["arrays"] if a["path"] == "frames")
    assert frames["bytes_per_sample"] == frames["raw_bytes_per_sample"] == 3 * 24 * 40 * 3  # raw: exact
    per_sample = sum(a["bytes_per_sample"] for a in d["arrays"])
    assert d["projected"]["bytes"] == pytest.approx(per_sample * 1000)
    assert d["projected"]["bytes"] < d["projected"]["raw_bytes"]  # labels and masks compress


def test_ingest_takes_a_flow_codec_and_refuses_an_unknown_one(synth_tiny, tmp_path):
    out = tmp_path / "cs.zarr"
    run = lambda *a: CliRunner().invoke(cli, list(map(str, a)))
    bad = run("ingest", "cityscapes-seq", "--root", synth_tiny, "--split", "val", "--out", out, "--flow-codec", "lzma")
    assert bad.exit_code == 2 and not out.exists()
    ok = run("ingest", "cityscapes-seq", "--root", synth_tiny, "--split", "val", "--out", out, "--workers", 1,
             "--flow-codec", "blosc-lz4")
    assert ok.exit_code == 0, ok.output
    assert run("flow", out, "--model", "dis", "--pairs", "bwd:1").exit_code == 0
    assert _codecs(out, "flows/bwd_1") == ["bytes", "blosc"]
    reader = StoreReader(out)
    assert reader.complete("flow_bwd_1").all() and np.isfinite(reader.flow(0, "bwd_1")).all()


def test_an_unknown_codec_is_one_error_naming_it(tmp_path):
    from flowprep.store import add_flow

    from .conftest import spec_for, write_store

    with pytest.raises(StoreError, match="codec 'lzma' is unknown"):
        spec_for(2, 8, 8, flow_codec="lzma")
    written = write_store(tmp_path / "s.zarr", n=2)
    with pytest.raises(StoreError, match="codec 'lzma' is unknown"):
        add_flow(written.path, 0, -2, codec="lzma")


def test_decoded_chunks_are_cached_within_a_byte_budget(store):
    reader = StoreReader(store.path)
    reader.DECODED_BYTES = 2 * 24 * 40  # two labels' worth
    for i in range(len(reader)):
        np.testing.assert_array_equal(reader.label(i), store.labels[i, 0])
    assert len(reader._decoded) == 2 and reader._decoded_bytes == 2 * 24 * 40
    assert np.shares_memory(reader.label(4), reader.label(4))  # a repeated read (the crop search) decodes once
