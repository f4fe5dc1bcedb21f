"""KITTI PNG and Middlebury .flo round trips, flow-import/-export, flow-show."""

import cv2
import numpy as np
from click.testing import CliRunner

from flowprep.cli import cli
from flowprep.flow.formats import read_flo, read_kitti, resize_flow, write_flo, write_kitti
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
    result = run("flow-import", fresh_store, "--pairs", "bwd:2", "--dir", tmp_path / "kitti")
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


def test_flow_show_writes_frame_flow_and_validity(fresh_store, tmp_path):
    run = lambda *a: CliRunner().invoke(cli, list(map(str, a)))
    assert run("flow", fresh_store, "--model", "dis", "--pairs", "bwd:1").exit_code == 0
    sid = StoreReader(fresh_store).sample_ids[0]
    result = run("flow-show", fresh_store, "--sample", sid, "--out", tmp_path / "show.png", "--zoom", "2")
    assert result.exit_code == 0, result.output
    img = cv2.imread(str(tmp_path / "show.png"))
    h, w = StoreReader(fresh_store).resolution
    assert img.shape == (2 * h, 2 * 3 * w, 3)
    result = run("flow-show", fresh_store, "--sample", "nope", "--out", tmp_path / "x.png")
    assert result.exit_code == 2 and "no sample 'nope'" in result.output


def test_import_reports_samples_without_a_file(fresh_store, tmp_path):
    r = StoreReader(fresh_store)
    h, w = r.resolution
    (tmp_path / "k").mkdir()
    write_kitti(tmp_path / "k" / f"{r.sample_ids[0]}.png", np.zeros((h, w, 2), np.float32))
    result = CliRunner().invoke(cli, ["flow-import", str(fresh_store), "--pairs", "bwd:1", "--dir", str(tmp_path / "k")])
    assert result.exit_code == 0, result.output
    assert f"imported 1 flows into bwd_1; 1 samples without a file: {r.sample_ids[1]}" in result.output
    assert StoreReader(fresh_store).complete("flow_bwd_1").tolist() == [True, False]
