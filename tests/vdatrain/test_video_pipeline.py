"""A video recipe end to end through the command line: ACCEL with consistent mixup, consistency
refinement and the video discriminator (judging the fused logits of t and of t-1, which reads frame t-2)
train, resume, and evaluate dual-frame with temporal metrics."""

import json

import pytest
from click.testing import CliRunner

from vdatrain.cli import cli

RECIPE = """
name: tiny-video
label: tiny MOM+disc
source: {{store: {source}, crop: [64, 64], offsets: [0, -1, -2], flows: [bwd_1, bwd_1_at_m1]}}
target: {{store: {target}, crop: [64, 64], offsets: [0, -1, -2], flows: [bwd_1, bwd_1_at_m1]}}
eval: {{store: {val}, classes: viper, window: [64, 64], stride: [32, 32]}}
model: {{name: deeplabv2_r18, hrda: {{detail_crop: [32, 32], detail_stride: [16, 16]}}, accel: {{pair: bwd_1}}}}
adapt:
  consistent_mix: true
  refine: {{strategy: consistency, pair: bwd_1, start_iter: 1}}
  video_disc: {{pair: bwd_1}}
  mic: {{block: 8}}
train: {{iters: 3, batch_size: 2, log_every: 1, checkpoint_every: 3, seed: 3, workers: 0, eval_every: 0}}
"""


@pytest.fixture(scope="module")
def run(tiny_store, tmp_path_factory):
    root = tmp_path_factory.mktemp("video")
    stores = {name: tiny_store(ds, split, offsets="-2,-1,0", pairs="bwd:1,bwd:1@-1") for name, ds, split in
              (("source", "viper", "train"), ("target", "cityscapes-seq", "train"), ("val", "cityscapes-seq", "val"))}
    (root / "recipe.yaml").write_text(RECIPE.format(**stores))
    result = CliRunner().invoke(cli, ["fit", str(root / "recipe.yaml"), "--run-dir", str(root / "run")])
    assert result.exit_code == 0, result.output
    return root


def test_every_video_part_contributes_from_its_iteration(run):
    records = [json.loads(line) for line in (run / "run/log.jsonl").read_text().splitlines()]
    losses = [r for r in records if "loss" in r]
    assert "loss/mix" not in losses[0] and "refine_kept" not in losses[0]  # refinement starts at iteration 1
    assert {"loss/source", "loss/mix", "loss/mic", "loss/adv", "refine_kept", "loss_disc"} <= set(losses[1])
    assert 0 < losses[1]["refine_kept"] <= 1


def test_dual_frame_evaluation_reports_mIoU_temporal_metrics_and_the_run_for_the_report(run):
    result = CliRunner().invoke(cli, ["eval", str(run / "recipe.yaml"), "--ckpt", str(run / "run/checkpoint.pt"),
                                      "--pictures", "1"])
    assert result.exit_code == 0, result.output
    saved = json.loads((run / "run/eval/results.json").read_text())
    assert saved["run"]["label"] == "tiny MOM+disc" and saved["run"]["shift"] == "viper -> cityscapes-seq"
    assert "skipped" not in saved  # every sample has frame t-1, t-2 and both flows
    assert list(saved["temporal"]) == ["bwd_1"] and 0 <= saved["temporal"]["bwd_1"]["standard"]["predconsis_miou"] <= 100
    report = CliRunner().invoke(cli, ["report", str(run / "run")])
    assert report.exit_code == 0 and "| tiny MOM+disc |" in report.output


def test_a_refinement_recipe_shows_what_refinement_does_to_a_pseudo_label(run, tmp_path):
    import cv2
    import numpy as np

    from vdatrain.figures import DROPPED, refinement_figure

    result = CliRunner().invoke(cli, ["eval", str(run / "recipe.yaml"), "--ckpt", str(run / "run/checkpoint.pt"),
                                      "--pictures", "2", "--no-temporal", "--out", str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    refined = sorted(p.name for p in (tmp_path / "eval/pictures").glob("refine_*.png"))
    assert len(refined) == 2 and cv2.imread(str(tmp_path / "eval/pictures" / refined[0])).shape[1] == 4 * 600
    t, k = np.array([[1, 2, 3, 4]]), np.array([[1, 5, 3, 0]])
    fig = refinement_figure(np.zeros((1, 4, 3), np.uint8), t, k, np.array([[True, True, True, False]]),
                            np.array([[1, 255, 3, 255]]), "consistency")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["frame t", "teacher's pseudo-label of t", "partner frame's, warped to t (no warp: black)",
                      "refined (50% kept, magenta dropped)"]
    shown = fig.axes[3].get_images()[0].get_array()
    assert shown[0, 1].tolist() == DROPPED.tolist() and shown[0, 0].tolist() != DROPPED.tolist()


def test_a_store_without_the_accel_pair_is_named_before_training(run, tiny_store):
    plain = tiny_store("cityscapes-seq", "val")
    result = CliRunner().invoke(cli, ["eval", str(run / "recipe.yaml"), "--ckpt", str(run / "run/checkpoint.pt"),
                                      "--set", f"eval.store={plain}"])
    assert result.exit_code == 2 and "eval.store:" in result.output and "bwd_1" in result.output


def test_pairs_a_two_frame_model_cannot_predict_are_listed_as_skipped(run, tiny_store):
    """Frame t-1's dual-frame prediction needs frame t-2, which this store lacks: the temporal pair is
    skipped for every sample, reported, and mIoU is still computed."""
    short = tiny_store("cityscapes-seq", "val", offsets="-1,0", pairs="bwd:1")
    result = CliRunner().invoke(cli, ["eval", str(run / "recipe.yaml"), "--ckpt", str(run / "run/checkpoint.pt"),
                                      "--set", f"eval.store={short}", "--pictures", "0", "--out", str(run / "short")])
    assert result.exit_code == 0, result.output
    saved = json.loads((run / "short/results.json").read_text())
    assert saved["skipped"] and all(s.endswith("/bwd_1") for s in saved["skipped"])
    assert "temporal pairs skipped" in result.output and saved["miou"]["standard"] >= 0
    assert "bwd_1" not in saved.get("temporal", {})  # nothing measured, nothing reported
