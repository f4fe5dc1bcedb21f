"""Flow files (KITTI PNG, .flo, .pfm, .flo5, VIPER .npz): round trips, agreement with ptlflow's readers,
flow-import of the reference's layout, flow-export, flow-compare, flow-show."""

import cv2
import re

import numpy as np
import pytest
from click.testing import CliRunner

from flowprep.cli import cli
from flowprep.flow.formats import FORMATS, read_flo, read_flow, read_kitti, resize_flow, write_flo, write_flow, write_kitti
from flowprep.store import StoreReader


def test_kitti_round_trip_within_a_128th_of_a_pixel_and_out_of_range_is_invalid(tmp_path):
    rng = np.random.default_rng(0)
    flow = rng.uniform(-300, 300, (8, 9, 2)).astype(np.float32)
    flow[0, 0] = (600, 0)  # beyond KITTI's +-512 px
    valid = rng.random((8, 9)) > 0.2
    write_kitti(tmp_path / "f.png", flow, valid)
    back, ok = read_kitti(tmp_path / "f.png")
    assert not ok[0, 0]
    expect = valid.copy()
    expect[0, 0] = False
    np.testing.assert_array_equal(ok, expect)
    assert np.abs(back[ok] - flow[ok]).max() <= 1 / 128 + 1e-6


def test_flo_round_trip_is_exact(tmp_path):
    flow = np.random.default_rng(1).normal(0, 10, (5, 7, 2)).astype(np.float32)
    write_flo(tmp_path / "f.flo", flow)
    np.testing.assert_array_equal(read_flo(tmp_path / "f.flo"), flow)


def test_resizing_scales_the_vectors():
    flow = np.zeros((10, 20, 2), np.float32)
    flow[..., 0], flow[..., 1] = 4.0, -2.0
    out, ok = resize_flow(flow, np.ones((10, 20), bool), 20, 60)
    assert out.shape == (20, 60, 2) and ok.all()
    np.testing.assert_allclose(out[..., 0], 12.0) and np.testing.assert_allclose(out[..., 1], -4.0)


def test_export_then_import_gives_the_same_store_flow(fresh_store, tmp_path):
    run = lambda *a: CliRunner().invoke(cli, list(map(str, a)))
    assert run("flow", fresh_store, "--model", "dis", "--pairs", "bwd:1").exit_code == 0
    assert run("flow-export", fresh_store, "--pair", "bwd_1", "--out", tmp_path / "kitti").exit_code == 0
    r = StoreReader(fresh_store)
    assert sorted(p.name for p in (tmp_path / "kitti").iterdir()) == [f"{s}.png" for s in r.sample_ids]
    result = run("flow-import", fresh_store, "--pair", "bwd:2", "--dir", tmp_path / "kitti")
    assert result.exit_code == 0, result.output
    r = StoreReader(fresh_store)
    for i in range(len(r)):  # imported into another pair name: same vectors within the 1/64 px KITTI step
        valid = r.flow_valid(i, "bwd_1")
        np.testing.assert_array_equal(r.flow_valid(i, "bwd_2"), valid)
        assert np.abs(r.flow(i, "bwd_2") - r.flow(i, "bwd_1"))[valid].max() <= 1 / 64  # KITTI keeps 0 where invalid
    assert run("flow-export", fresh_store, "--pair", "bwd_1", "--out", tmp_path / "flo", "--format", "flo").exit_code == 0
    np.testing.assert_allclose(read_flo(tmp_path / "flo" / f"{r.sample_ids[0]}.flo"), r.flow(0, "bwd_1"))


def test_import_of_another_resolution_needs_rescale(fresh_store, tmp_path):
    r = StoreReader(fresh_store)
    (tmp_path / "k").mkdir()
    h, w = r.resolution
    for sid in r.sample_ids:
        write_kitti(tmp_path / "k" / f"{sid}.png", np.full((h * 2, w * 2, 2), 2.0, np.float32))
    run = lambda *a: CliRunner().invoke(cli, list(map(str, a)))
    result = run("flow-import", fresh_store, "--pairs", "bwd:1", "--dir", tmp_path / "k")
    assert result.exit_code == 2 and "use --rescale" in result.output
    assert run("flow-import", fresh_store, "--pairs", "bwd:1", "--dir", tmp_path / "k", "--rescale").exit_code == 0
    np.testing.assert_allclose(StoreReader(fresh_store).flow(0, "bwd_1"), 1.0)  # halved with the image


def test_flow_show_writes_frame_flow_with_its_colour_key_and_validity(fresh_store, tmp_path):
    from flowprep.flow.show import flow_picture

    run = lambda *a: CliRunner().invoke(cli, list(map(str, a)))
    assert run("flow", fresh_store, "--model", "dis", "--pairs", "bwd:1").exit_code == 0
    sid = StoreReader(fresh_store).sample_ids[0]
    result = run("flow-show", fresh_store, "--sample", sid, "--out", tmp_path / "show.png", "--zoom", "2")
    assert result.exit_code == 0, result.output
    img = cv2.imread(str(tmp_path / "show.png"))
    assert img.shape[1] == 3 * 2 * 600  # three panels, 1200 px each at --zoom 2
    fig = flow_picture(fresh_store, sid, "bwd:1")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:3] == ["source frame", f"{sid}: flow bwd_1, frame +0 -> -1", titles[2]]
    key = fig.axes[1].child_axes[0].get_title()  # the colour wheel, inset in the flow panel
    assert titles[2].startswith("validity: white valid (") and "black not" in titles[2]  # the panel says its colours
    assert key.startswith("rim ") and key.endswith(" px")
    result = run("flow-show", fresh_store, "--sample", "nope", "--out", tmp_path / "x.png")
    assert result.exit_code == 2 and "no sample 'nope'" in result.output


def test_flow_colours_are_ptlflows_colour_wheel():
    from ptlflow.utils.external.flowpy import flow_to_rgb as ptlflow_colours

    from flowprep.viz import flow_to_rgb, wheel_key

    flow = np.random.default_rng(5).normal(0, 6, (24, 32, 2)).astype(np.float32)
    for radius in (None, 4.0):  # the largest vector at the rim, or a fixed scale (longer vectors darkened)
        ours = flow_to_rgb(flow, max_norm=radius).astype(int)
        assert np.abs(ours - ptlflow_colours(flow.copy(), radius).astype(int)).max() <= 1
    right, down = flow_to_rgb(np.array([[[1.0, 0.0], [0.0, 1.0]]]), max_norm=1.0)[0]
    assert right.tolist() == [255, 0, 0] and down[0] == 255 and down[2] < 80  # right red, down orange
    key = wheel_key(51)
    assert key[25, 25].tolist() == [255, 255, 255] and key[25, 50].tolist() == [255, 0, 0]


def test_import_reports_samples_without_a_file(fresh_store, tmp_path):
    r = StoreReader(fresh_store)
    h, w = r.resolution
    (tmp_path / "k").mkdir()
    write_kitti(tmp_path / "k" / f"{r.sample_ids[0]}.png", np.zeros((h, w, 2), np.float32))
    result = CliRunner().invoke(cli, ["flow-import", str(fresh_store), "--pairs", "bwd:1", "--dir", str(tmp_path / "k")])
    assert result.exit_code == 0, result.output
    assert f"imported 1 flows into bwd_1; 1 samples without a file: {r.sample_ids[1]}" in result.output
    assert StoreReader(fresh_store).complete("flow_bwd_1").tolist() == [True, False]


@pytest.mark.parametrize("fmt", ["kitti", "flo", "pfm", "flo5", "viper"])
def test_export_then_import_in_every_format_gives_back_the_flows_and_their_validity(fresh_store, tmp_path, fmt):
    """Formats without a mask travel with `<name>_valid.png` beside each file; import reads it back."""
    run = lambda *a: CliRunner().invoke(cli, list(map(str, a)))
    assert run("flow", fresh_store, "--model", "dis", "--pairs", "bwd:1").exit_code == 0
    result = run("flow-export", fresh_store, "--pair", "bwd:1", "--out", tmp_path / fmt, "--format", fmt)
    assert result.exit_code == 0, result.output
    ext = FORMATS[fmt][0]
    assert run("flow-import", fresh_store, "--pair", "fwd_1", "--dir", tmp_path / fmt,
               "--pattern", "{sample_id}" + ext).exit_code == 0
    r = StoreReader(fresh_store)
    step = {"viper": 1 / 32, "kitti": 1 / 64}.get(fmt, 0)  # float16 keeps 1/32 px up to 64 px; KITTI 1/64
    for i in range(len(r)):
        valid = np.asarray(r.flow_valid(i, "bwd_1"))
        assert 0 < valid.mean() < 1  # DIS leaves some pixels invalid: the mask is worth carrying
        np.testing.assert_array_equal(r.flow_valid(i, "fwd_1"), valid)
        assert np.abs(r.flow(i, "fwd_1") - r.flow(i, "bwd_1"))[valid].max() <= step


def test_an_import_without_validity_pictures_says_validity_is_unknown(fresh_store, tmp_path):
    run = lambda *a: CliRunner().invoke(cli, list(map(str, a)))
    assert run("flow", fresh_store, "--model", "dis", "--pairs", "bwd:1").exit_code == 0
    assert run("flow-export", fresh_store, "--pair", "bwd:1", "--out", tmp_path / "f", "--format", "flo").exit_code == 0
    for p in (tmp_path / "f").glob("*_valid.png"):
        p.unlink()
    result = run("flow-import", fresh_store, "--pair", "fwd_1", "--dir", tmp_path / "f", "--pattern", "{sample_id}.flo")
    assert result.exit_code == 0, result.output
    assert "validity unknown" in result.output
    r = StoreReader(fresh_store)
    assert r.attrs["provenance"][-1]["validity"].startswith("unknown for 2 of 2 files")
    assert np.asarray(r.flow_valid(0, "fwd_1")).all()


def test_our_readers_agree_with_ptlflows(tmp_path):
    from ptlflow.utils.flow_utils import flow_read

    rng = np.random.default_rng(3)
    flow = rng.normal(0, 20, (6, 9, 2)).astype(np.float32)
    for fmt in ("flo", "pfm", "flo5"):
        path = tmp_path / f"f{FORMATS[fmt][0]}"
        write_flow(path, flow, None, fmt)
        np.testing.assert_array_equal(read_flow(path)[0], flow_read(str(path)))
    write_flow(tmp_path / "v.npz", flow, None, "viper")
    ours = read_flow(tmp_path / "v.npz")[0]
    np.testing.assert_array_equal(ours, flow_read(str(tmp_path / "v.npz"), format="viper_npz"))
    write_kitti(tmp_path / "k.png", flow)
    np.testing.assert_allclose(read_kitti(tmp_path / "k.png")[0], flow_read(str(tmp_path / "k.png")), atol=1e-6)


def test_import_of_the_references_layout_names_the_pairs_source_frame(fresh_store, tmp_path):
    """The reference files a flow under its source frame: t-1 for the pair t-1 -> t-2 (ACCEL's)."""
    run = lambda *a: CliRunner().invoke(cli, list(map(str, a)))
    assert run("flow", fresh_store, "--model", "dis", "--pairs", "bwd:1@-1").exit_code == 0
    layout = "{city}/{city}_{seq:06d}_{frame:06d}_leftImg8bit"
    result = run("flow-export", fresh_store, "--pair", "bwd_1_at_m1", "--out", tmp_path / "published",
                 "--pattern", layout)
    assert result.exit_code == 0, result.output
    names = sorted(str(p.relative_to(tmp_path / "published")) for p in (tmp_path / "published").rglob("*.png"))
    assert names == ["frankfurt/frankfurt_000000_000293_leftImg8bit.png", "lindau/lindau_000000_000018_leftImg8bit.png"]
    result = run("flow-import", fresh_store, "--pair", "bwd:2", "--dir", tmp_path / "published",
                 "--pattern", "{city}/{city}_{seq:06d}_{t:06d}_leftImg8bit.png")  # t: filed under frame t
    assert "imported 0 flows" in result.output  # no file carries frame t's number
    result = run("flow-import", fresh_store, "--pair", "bwd:1@-1", "--dir", tmp_path / "published",
                 "--pattern", layout + ".png")
    assert result.exit_code == 0 and "imported 2 flows into bwd_1_at_m1" in result.output


def test_an_unknown_placeholder_is_one_line_naming_it_before_anything_is_written(fresh_store, tmp_path):
    (tmp_path / "d").mkdir()
    result = CliRunner().invoke(cli, ["flow-import", str(fresh_store), "--pair", "bwd:1", "--dir", str(tmp_path / "d"),
                                      "--pattern", "{town}/{sample_id}.png"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.strip() == ("error: --pattern '{town}/{sample_id}.png': unknown placeholder {town} (this "
                                     "store offers {sample_id}, {offset}, {city}, {seq}, {frame}, {t})")
    assert "bwd_1" not in StoreReader(fresh_store).flow_pairs


def test_flow_compare_scores_a_stored_flow_against_viper_style_ground_truth(fresh_store, tmp_path, synth_tiny):
    run = lambda *a: CliRunner().invoke(cli, list(map(str, a)))
    assert run("flow", fresh_store, "--model", "dis", "--pairs", "bwd:1").exit_code == 0
    r = StoreReader(fresh_store)
    (tmp_path / "gt").mkdir()
    for sid in r.sample_ids:  # the replica's exact flow, written as VIPER ships its ground truth
        truth = np.load(synth_tiny / f"_truth/cityscapes-seq/val/{sid}.npz")
        gt = truth["flow_0_-1"].copy()
        gt[truth["occ_0_-1"]] = np.nan
        write_flow(tmp_path / "gt" / f"{sid}.npz", gt, None, "viper")
    result = run("flow-compare", fresh_store, "--pair", "bwd_1", "--dir", tmp_path / "gt", "--pattern", "{sample_id}.npz")
    assert result.exit_code == 0, result.output
    epe = float(result.output.split("EPE ")[1].split(" px")[0])
    assert 0 < epe < 2.0  # DIS on the replica (test_flow_job checks it against the truth directly)
    exact = tmp_path / "exact.zarr"
    import shutil

    shutil.copytree(fresh_store, exact)
    assert run("flow-import", exact, "--pair", "bwd_1", "--dir", tmp_path / "gt", "--pattern", "{sample_id}.npz").exit_code == 0
    again = run("flow-compare", exact, "--pair", "bwd_1", "--dir", tmp_path / "gt", "--pattern", "{sample_id}.npz")
    assert float(again.output.split("EPE ")[1].split(" px")[0]) <= 1 / 32  # the store's 1/32 px step, nothing more


def test_one_pair_at_a_time_and_a_reference_of_another_size_are_one_line_errors(fresh_store, tmp_path):
    run = lambda *a: CliRunner().invoke(cli, list(map(str, a)))
    (tmp_path / "d").mkdir()
    both = run("flow-import", fresh_store, "--pair", "bwd:1,bwd:2", "--dir", tmp_path / "d")
    assert both.exit_code == 2 and "one pair at a time" in both.output
    assert run("flow", fresh_store, "--model", "dis", "--pairs", "bwd:1").exit_code == 0
    sid = StoreReader(fresh_store).sample_ids[0]
    write_flow(tmp_path / "d" / f"{sid}.flo", np.zeros((7, 9, 2), np.float32), None, "flo")
    small = run("flow-compare", fresh_store, "--pair", "bwd_1", "--dir", tmp_path / "d", "--pattern", "{sample_id}.flo")
    assert small.exit_code == 2 and "9x7, the store is" in small.output and "Traceback" not in small.output


def _hostile_files(tmp_path):
    """Flow files whose headers lie: each (file name, bytes or a writer)."""
    import struct
    import zlib

    import h5py

    def png(w, h):  # a PNG signature and IHDR declaring w x h, then nothing
        ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
        return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))

    files = {
        "negative.flo": b"PIEH" + np.array([-4, 8], "<i4").tobytes() + b"\0" * 64,
        "overflow.flo": b"PIEH" + np.array([65536, 65536], "<i4").tobytes() + b"\0" * 64,  # 8 w h wraps in int32
        "huge.pfm": b"PF\n100000 100000\n-1.0\n" + b"\0" * 64,
        "negative.pfm": b"PF\n-3 5\n-1.0\n" + b"\0" * 64,
        "truncated.pfm": b"PF\n8 4\n-1.0\n" + b"\0" * 40,
        "huge.png": png(200000, 200000),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "other.h5").write_bytes(b"")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["secret"] = np.ones((4, 4, 2), np.float32)
    with h5py.File(tmp_path / "external.flo5", "w") as f:
        f["flow"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/secret")
    with h5py.File(tmp_path / "scalar.flo5", "w") as f:
        f["flow"] = 3.0
    with h5py.File(tmp_path / "huge.flo5", "w") as f:
        f.create_dataset("flow", shape=(100000, 100000, 2), dtype="f4")  # no data written: declared only
    return tmp_path


@pytest.mark.parametrize("name,message", [
    ("negative.flo", "declares a -4x8 flow"), ("overflow.flo", "declares a 65536x65536 flow"),
    ("huge.pfm", "declares a 100000x100000 flow"), ("negative.pfm", "declares a -3x5 flow"),
    ("truncated.pfm", "(truncated)"), ("huge.png", "declares a 200000x200000 flow"),
    ("external.flo5", "'flow' is a link (ExternalLink)"), ("scalar.flo5", "is not an (H, W, 2) array"),
    ("huge.flo5", "declares a 100000x100000 flow"),
])
def test_a_flow_file_whose_header_lies_is_one_line_before_anything_is_allocated(tmp_path, name, message):
    from flowprep.errors import FlowprepError
    from flowprep.flow.formats import read_flow

    _hostile_files(tmp_path)
    with pytest.raises(FlowprepError, match=re.escape(message)):
        read_flow(tmp_path / name)
