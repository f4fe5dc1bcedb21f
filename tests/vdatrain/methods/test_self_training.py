"""`vdatrain fit` with an `adapt` section: every part runs, the teacher is checkpointed, resume is exact."""

import json
import signal

import pytest
import torch
from click.testing import CliRunner

from vdatrain.cli import cli

RECIPE = """
name: tiny-hrda-mic
source: {{store: {source}, crop: [64, 64], max_class_ratio: 0.75}}
target: {{store: {target}, crop: [64, 64], margins: true}}
eval: {{store: {target}, classes: viper, window: [64, 64], stride: [32, 32]}}
model: {{name: deeplabv2_r18, hrda: {{detail_crop: [32, 32], detail_stride: [16, 16]}}}}
adapt:
  rcs: {{min_pixels: 20, min_crop_ratio: 1.0}}
  fd: {{}}
  mic: {{block: 8}}
optim: {{warmup_iters: 2}}
train: {{iters: 4, batch_size: 2, log_every: 1, checkpoint_every: 2, seed: 3, workers: 0, eval_every: 0}}
"""


@pytest.fixture(scope="module")
def recipe(tiny_store, tmp_path_factory):
    path = tmp_path_factory.mktemp("selftrain") / "recipe.yaml"
    path.write_text(RECIPE.format(source=tiny_store("viper", "train"), target=tiny_store("cityscapes-seq", "train")))
    return path


def _records(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def clean_run(recipe, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("selftrain-run") / "run"
    result = CliRunner().invoke(cli, ["fit", str(recipe), "--run-dir", str(run_dir)])
    assert result.exit_code == 0, result.output
    return run_dir


def test_every_part_contributes_a_loss_and_the_teacher_is_saved(clean_run):
    records = _records(clean_run)
    rcs = records[0]
    assert rcs["iteration"] == 0 and abs(sum(rcs["rcs_p"]) - 1) < 1e-3
    steps = [r for r in records if "loss" in r]
    assert [r["iteration"] for r in steps] == [1, 2, 3, 4]
    for r in steps:
        assert {"loss/source", "loss/fd", "loss/mix", "loss/mic"} <= set(r)
        assert r["loss"] == pytest.approx(r["loss/source"] + r["loss/fd"] + r["loss/mix"] + r["loss/mic"], rel=1e-5)
    ckpt = torch.load(clean_run / "checkpoint.pt", weights_only=False)
    student, teacher = ckpt["model"], ckpt["method"]["teacher"]
    assert student.keys() == teacher.keys() and "attention.aspp.0.weight" in student
    assert not torch.equal(student["head.aspp.0.weight"], teacher["head.aspp.0.weight"])


def test_a_killed_self_training_run_resumes_with_the_same_losses(recipe, clean_run, tmp_path, run_killed):
    proc = run_killed("torch.optim:AdamW.step", 3, "fit", recipe, "--run-dir", tmp_path / "killed", program="vdatrain")
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    result = CliRunner().invoke(cli, ["fit", str(recipe), "--run-dir", str(tmp_path / "killed")])
    assert result.exit_code == 0, result.output
    clean = {r["iteration"]: r["loss"] for r in _records(clean_run) if "loss" in r}
    resumed = {r["iteration"]: r["loss"] for r in _records(tmp_path / "killed") if "loss" in r}
    assert [resumed[i] for i in (3, 4)] == [clean[i] for i in (3, 4)]


def test_student_and_teacher_are_evaluated(recipe, clean_run, tmp_path):
    for branch in ("student", "teacher"):
        result = CliRunner().invoke(cli, ["eval", str(recipe), "--ckpt", str(clean_run / "checkpoint.pt"),
                                          "--branch", branch, "--pictures", "0", "--out", str(tmp_path / branch)])
        assert result.exit_code == 0, result.output
        assert f"vdatrain{' (teacher)' if branch == 'teacher' else ''} weights" in result.output
        assert (tmp_path / branch / "confusion.npy").is_file()


@pytest.mark.parametrize("retries", [0, 1, 10])
def test_every_number_of_rare_class_retries_the_schema_accepts_trains(recipe, tmp_path, retries):
    """retries 0 is one draw, unchecked (it was an UnboundLocalError in a loader worker)."""
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(cli, ["fit", str(recipe), "--run-dir", str(run_dir), "--set", "train.iters=1",
                                      "--set", f"adapt.rcs.retries={retries}", "--set", "train.workers=1"])
    assert result.exit_code == 0, result.output
    assert [r["iteration"] for r in _records(run_dir) if "loss" in r] == [1]
