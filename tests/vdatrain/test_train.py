"""`vdatrain fit`: a short supervised run, logged, checkpointed, and resumed exactly after a kill."""

import json
import signal

import pytest
from click.testing import CliRunner

from vdatrain.cli import cli
from vdatrain.data.batches import batch_indices

RECIPE = """
name: tiny-source-only
model: {{name: deeplabv2_r18}}
source: {{store: {store}, crop: [32, 64], max_class_ratio: 0.75}}
eval: {{store: {store}, window: [64, 128], stride: [32, 64]}}
optim: {{warmup_iters: 2}}
train: {{iters: 6, batch_size: 2, log_every: 1, checkpoint_every: 2, seed: 5, workers: 1, eval_every: 0}}
"""


@pytest.fixture(scope="module")
def recipe(tiny_store, tmp_path_factory):
    path = tmp_path_factory.mktemp("train") / "recipe.yaml"
    path.write_text(RECIPE.format(store=tiny_store("cityscapes-seq", "val")))
    return path


def _losses(run_dir):
    records = map(json.loads, (run_dir / "log.jsonl").read_text().splitlines())
    return {r["iteration"]: r["loss"] for r in records if "loss" in r}


def test_batches_are_a_pure_function_of_the_iteration():
    assert batch_indices(1, 7, 4, 10) == batch_indices(1, 7, 4, 10)
    first_pass = [i for it in range(5) for i in batch_indices(1, it, 2, 10)]
    assert sorted(first_pass) == list(range(10))  # every item once per pass


def test_fit_logs_checkpoints_and_records_the_run(recipe, tmp_path):
    result = CliRunner().invoke(cli, ["fit", str(recipe), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    losses = _losses(tmp_path / "run")
    assert sorted(losses) == [1, 2, 3, 4, 5, 6] and all(v > 0 for v in losses.values())
    assert (tmp_path / "run/checkpoint.pt").is_file()
    run = json.loads((tmp_path / "run/run.json").read_text())
    assert run["vdatrain"] == "0.1.0" and run["torch"].startswith("2.14") and "command" in run
    assert json.loads((tmp_path / "run/recipe.json").read_text())["train"]["iters"] == 6


def test_fit_writes_tensorboard_scalars(recipe, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert CliRunner().invoke(cli, ["fit", str(recipe), "--run-dir", str(tmp_path / "run")]).exit_code == 0
    events = EventAccumulator(str(tmp_path / "run/tb"))
    events.Reload()
    assert {"loss", "loss/source", "lr", "seconds_per_it"} <= set(events.Tags()["scalars"])
    losses = _losses(tmp_path / "run")
    assert [(e.step, pytest.approx(e.value)) for e in events.Scalars("loss")] == sorted(losses.items())


def test_fit_evaluates_when_due(recipe, tmp_path):
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["fit", str(recipe), "--run-dir", str(run), "--set", "train.eval_every=3"])
    assert result.exit_code == 0, result.output
    evals = [r for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "miou/standard" in r]
    assert [r["iteration"] for r in evals] == [3, 6]
    assert (run / "eval/iter_6/per_class.md").is_file()


def test_a_killed_run_resumes_with_the_same_losses_and_logs_each_iteration_once(recipe, tmp_path, run_killed):
    """Killed inside iteration 6, after the checkpoint of iteration 4 and the record of iteration 5: the relaunch
    says where it resumes, forgets the record of 5, and trains 5 and 6 again with the uninterrupted losses;
    log.jsonl and TensorBoard hold each iteration once."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert CliRunner().invoke(cli, ["fit", str(recipe), "--run-dir", str(tmp_path / "clean")]).exit_code == 0
    proc = run_killed("torch.optim:AdamW.step", 6, "fit", recipe, "--run-dir", tmp_path / "killed", program="vdatrain")
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert sorted(_losses(tmp_path / "killed")) == [1, 2, 3, 4, 5]
    result = CliRunner().invoke(cli, ["fit", str(recipe), "--run-dir", str(tmp_path / "killed")])
    assert result.exit_code == 0, result.output
    assert f"{tmp_path / 'killed'}: resuming from iteration 4 of 6" in result.output
    clean, resumed = _losses(tmp_path / "clean"), _losses(tmp_path / "killed")
    records = [json.loads(line) for line in (tmp_path / "killed/log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if "loss" in r] == [1, 2, 3, 4, 5, 6]
    assert [resumed[i] for i in (5, 6)] == [clean[i] for i in (5, 6)]
    events = EventAccumulator(str(tmp_path / "killed/tb"))
    events.Reload()
    assert [e.step for e in events.Scalars("loss")] == [1, 2, 3, 4, 5, 6]


def test_resuming_on_another_schedule_is_an_error_unless_allowed(recipe, tmp_path):
    run = tmp_path / "run"
    assert CliRunner().invoke(cli, ["fit", str(recipe), "--run-dir", str(run), "--set", "train.iters=2"]).exit_code == 0
    before = (run / "recipe.json").read_text()
    longer = CliRunner().invoke(cli, ["fit", str(recipe), "--run-dir", str(run), "--set", "train.iters=4"])
    assert longer.exit_code == 2 and "train.iters: 4 differs from 2" in longer.output, longer.output
    faster = CliRunner().invoke(cli, ["fit", str(recipe), "--run-dir", str(run), "--set", "train.iters=2",
                                      "--set", "optim.lr=1.0e-3"])
    assert faster.exit_code == 2 and "optim.lr: 0.001 differs from 6e-05" in faster.output
    assert "--allow-schedule-change" in faster.output and (run / "recipe.json").read_text() == before
    allowed = CliRunner().invoke(cli, ["fit", str(recipe), "--run-dir", str(run), "--set", "train.iters=4",
                                       "--set", "optim.lr=1.0e-3", "--allow-schedule-change"])
    assert allowed.exit_code == 0, allowed.output
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    lr = {r["iteration"]: r["lr"] for r in records if "lr" in r}
    assert lr[3] == pytest.approx(1.0e-3 * (1 - 2 / 4))  # the new rate on the new 4-iteration decay, after warm-up
    assert json.loads((run / "recipe.json").read_text())["optim"]["lr"] == 1.0e-3


def test_a_bad_recipe_is_a_one_line_error(recipe, tmp_path):
    result = CliRunner().invoke(cli, ["fit", str(recipe), "--set", "train.iters=lots"])
    assert result.exit_code == 2 and "train.iters: expected int, got 'lots'" in result.output


def test_eval_writes_tables_whose_miou_matches_the_confusion_matrix(recipe, tmp_path):
    import numpy as np

    from vdatrain.metrics.miou import miou

    assert CliRunner().invoke(cli, ["fit", str(recipe), "--run-dir", str(tmp_path / "run")]).exit_code == 0
    result = CliRunner().invoke(cli, ["eval", str(recipe), "--ckpt", str(tmp_path / "run/checkpoint.pt"),
                                      "--set", "eval.classes=viper", "--out", str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    assert "| road | " in result.output and "**mIoU**" in result.output
    conf = np.load(tmp_path / "eval/confusion.npy")
    assert conf.shape == (19, 19) and conf.sum() > 0
    saved = json.loads((tmp_path / "eval/results.json").read_text())
    viper = [0, 1, 2, 4, 6, 7, 8, 9, 10, 11, 13, 14, 15, 17, 18]
    assert saved["miou"]["standard"] == pytest.approx(miou(conf, viper, "standard"))
    assert saved["miou"]["unifiedvideoda"] == pytest.approx(miou(conf, viper, "unifiedvideoda"))
    assert len((tmp_path / "eval/per_class.csv").read_text().splitlines()) == 1 + 15
    pictures = sorted(p.name for p in (tmp_path / "eval/pictures").iterdir())
    assert len(pictures) == 2 * 2 and pictures[0].endswith(".png")  # 2 val samples: panel + prediction


def test_eval_pictures_show_image_prediction_truth_and_errors_with_a_legend(recipe, tmp_path):
    import cv2
    import numpy as np

    from flowprep.store import StoreReader
    from flowprep.viz import colourise
    from vdatrain.figures import error_map, prediction_figure

    assert CliRunner().invoke(cli, ["fit", str(recipe), "--run-dir", str(tmp_path / "run")]).exit_code == 0
    result = CliRunner().invoke(cli, ["eval", str(recipe), "--ckpt", str(tmp_path / "run/checkpoint.pt"),
                                      "--pictures", "1", "--out", str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    store = StoreReader(json.loads((tmp_path / "run/recipe.json").read_text())["eval"]["store"])
    sid = store.sample_ids[0]
    panel = cv2.imread(str(tmp_path / f"eval/pictures/{sid}.png"))
    pred = cv2.imread(str(tmp_path / f"eval/pictures/{sid}_pred.png"))[..., ::-1]
    h, w = store.resolution
    assert panel.shape[1] == 4 * 600 and panel.shape[0] > 600 * h / w  # four 600-px panels and a legend row
    assert pred.shape == (h, w, 3)
    assert len(list((tmp_path / "eval/pictures").iterdir())) == 2
    label = np.asarray(store.label(0, 0))
    ids = np.argmin(np.abs(colourise(np.arange(19, dtype=np.uint8))[None, None].astype(int)
                           - pred[:, :, None].astype(int)).sum(-1), -1).astype(np.uint8)  # the palette read back
    fig = prediction_figure(np.asarray(store.frame(0, 0)), ids, label, sid)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:3] == ["image", "prediction", "ground truth"] and titles[3].startswith("errors: red wrong")
    legend = {t.get_text() for t in fig.legends[0].get_texts()}
    present = set(np.unique(np.concatenate([ids.ravel(), label.ravel()])))
    from flowprep.manifest import load_classes

    assert legend == {load_classes().names[i] for i in present if i < 19} | ({"ignore"} if 255 in present else set())
    errors = error_map(np.array([[1, 2, 3]]), np.array([[1, 5, 255]]))
    assert errors[0, 0].tolist() == [255, 255, 255] and errors[0, 1].tolist() == [220, 30, 30]
    assert errors[0, 2].tolist() == [0, 0, 0]
    # a class the shift does not evaluate (5: pole, absent from VIPER) is not scored: black, out of the accuracy
    fig = prediction_figure(np.zeros((1, 3, 3), np.uint8), np.array([[1, 2, 3]]), np.array([[1, 5, 3]]), sid,
                            evaluated=[1, 3])
    assert "100.0% pixel accuracy" in fig.axes[3].get_title()
    assert error_map(np.array([[1, 2]]), np.array([[1, 5]]), np.array([[True, False]]))[0, 1].tolist() == [0, 0, 0]


def test_the_train_step_benchmark_prints_its_table():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "bench/train_step.py", "--smoke"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [line for line in out.stdout.splitlines() if line.startswith("| deeplabv2") or line.startswith("| daformer")]
    assert len(rows) == 8 and all(" 1.00x | 1.00x |" in r for r in rows if "| fp32 |" in r)
    assert sum("| hrda-mic |" in r for r in rows) == 4


def test_a_truncated_checkpoint_in_the_run_folder_is_named(recipe, tmp_path):
    run = tmp_path / "run"
    assert CliRunner().invoke(cli, ["fit", str(recipe), "--run-dir", str(run), "--set", "train.iters=2"]).exit_code == 0
    data = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(data[: len(data) // 3])  # a copy cut short
    result = CliRunner().invoke(cli, ["fit", str(recipe), "--run-dir", str(run), "--set", "train.iters=2"])
    assert result.exit_code == 2 and "checkpoint.pt: not a readable PyTorch checkpoint" in result.output
    assert "Traceback" not in result.output


def test_keep_checkpoints_keeps_the_last_n_beside_the_rolling_one(recipe, tmp_path):
    import torch

    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["fit", str(recipe), "--run-dir", str(run), "--set", "train.keep_checkpoints=2"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in run.glob("*.pt")) == ["checkpoint.pt", "iter_4.pt", "iter_6.pt"]
    for n in (4, 6):
        assert torch.load(run / f"iter_{n}.pt", weights_only=True)["iteration"] == n
    assert (run / "iter_6.pt").stat().st_ino == (run / "checkpoint.pt").stat().st_ino  # a link, not a copy


def test_a_loss_that_is_not_finite_stops_the_run_with_one_line_and_keeps_the_last_good_checkpoint(recipe, tmp_path,
                                                                                                monkeypatch):
    """NaN at iteration 3: found where the loop reads values anyway (the checkpoint due after iteration 4, no
    log is due before), named with its iteration and term; exit 1; checkpoint.pt stays that of iteration 2."""
    import torch

    from vdatrain.methods import student

    calls = {"n": 0}
    original = student.segmentation_loss

    def nan_at_third_call(*args, **kwargs):
        calls["n"] += 1
        loss = original(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 3 else loss

    monkeypatch.setattr(student, "segmentation_loss", nan_at_third_call)
    result = CliRunner().invoke(cli, ["fit", str(recipe), "--run-dir", str(tmp_path / "run"),
                                      "--set", "train.log_every=5", "--set", "train.workers=0"])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1] == ("error: iteration 3: the source loss is not finite (NaN or inf); training stopped, the run "
                         "folder keeps the last checkpoint before it") and "Traceback" not in result.output
    ckpt = torch.load(tmp_path / "run/checkpoint.pt", weights_only=True)
    assert ckpt["iteration"] == 2 and all(torch.isfinite(v).all() for v in ckpt["model"].values()
                                          if v.is_floating_point())



def test_one_fit_per_run_folder_and_a_folder_of_another_model_is_named(recipe, tmp_path):
    """A second `vdatrain fit` in a run folder in use is refused naming the holder; a run folder trained with
    another model is one line (not a state-dict traceback); so is a checkpoint whose recipe lacks a section."""
    import torch

    from vdatrain.lock import FolderLock

    run = tmp_path / "run"
    with FolderLock(run, "run folder"):  # what a running fit holds
        busy = CliRunner().invoke(cli, ["fit", str(recipe), "--run-dir", str(run)])
    assert busy.exit_code == 1 and f"this run folder is in use by process {__import__('os').getpid()}" in busy.output
    assert CliRunner().invoke(cli, ["fit", str(recipe), "--run-dir", str(run), "--set", "train.iters=2"]).exit_code == 0
    other = CliRunner().invoke(cli, ["fit", str(recipe), "--run-dir", str(run), "--set", "train.iters=2",
                                     "--set", "model.name=deeplabv2_check"])
    assert other.exit_code == 2 and "the run's model does not fit the recipe's deeplabv2_check" in other.output
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    del ckpt["recipe"]["optim"]
    torch.save(ckpt, run / "checkpoint.pt")
    lacking = CliRunner().invoke(cli, ["fit", str(recipe), "--run-dir", str(run), "--set", "train.iters=2"])
    assert lacking.exit_code == 2 and "not a checkpoint of `vdatrain fit` (no 'optim')" in lacking.output
