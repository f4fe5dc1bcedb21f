"""`flowprep synth` and `flowprep synth-preview` from the command line."""

import cv2
from click.testing import CliRunner

from flowprep.cli import cli


def test_synth_writes_the_requested_replica_and_reports_it(tmp_path):
    result = CliRunner().invoke(cli, ["synth", "--out", str(tmp_path / "raw"), "--datasets", "synthia-seq", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "synthia-seq     64x38  10 fps  labelled samples: train 8" in result.output
    assert (tmp_path / "raw/SYNTHIA-SEQS-04-DAWN/RGB/Stereo_Left/Omni_F/000009.png").is_file()
    assert not (tmp_path / "raw/bdd100k").exists()


def test_unknown_dataset_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(cli, ["synth", "--out", str(tmp_path), "--datasets", "viper,kitti"])
    assert result.exit_code == 2 and "unknown dataset(s) ['kitti']" in result.output


def test_preview_writes_one_picture_per_replica(synth_tiny, tmp_path):
    result = CliRunner().invoke(cli, ["synth-preview", str(synth_tiny), "--out", str(tmp_path), "--zoom", "2"])
    assert result.exit_code == 0, result.output
    for name in ("viper", "synthia-seq", "cityscapes-seq", "bdd"):
        img = cv2.imread(str(tmp_path / f"{name}.png"))
        assert img is not None and img.shape[1] > 2 * img.shape[0]  # frame | label | flow side by side


def test_preview_of_a_folder_that_is_not_a_replica_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(cli, ["synth-preview", str(tmp_path), "--out", str(tmp_path / "p")])
    assert result.exit_code == 2 and "_truth/synth.json: missing" in result.output


def test_preview_skips_the_broken_bdd_ids_whatever_the_seed(tmp_path):
    """Seed 5 put a BDD id without a video (so without flow truth) in the middle of the list."""
    assert CliRunner().invoke(cli, ["synth", "--out", str(tmp_path / "raw"), "--scale", "tiny", "--seed", "5",
                                    "--datasets", "bdd"]).exit_code == 0
    result = CliRunner().invoke(cli, ["synth-preview", str(tmp_path / "raw"), "--out", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    assert cv2.imread(str(tmp_path / "p/bdd.png")) is not None
