"""`torchrun -m vdatrain fit` with 2 CPU processes (gloo): shards, replicas in sync, resume after a kill."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vdatrain.data.batches import batch_indices

RECIPE = """
name: tiny-ddp
model: {{name: deeplabv2_r18}}
source: {{store: {store}, crop: [32, 64]}}
eval: {{store: {store}, window: [64, 128], stride: [32, 64]}}
optim: {{warmup_iters: 2}}
train: {{iters: 6, batch_size: 4, log_every: 1, checkpoint_every: 2, seed: 2, workers: 0, eval_every: 0}}
"""
TORCHRUN = ("-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2")


@pytest.fixture(scope="module")
def recipe(tiny_store, tmp_path_factory):
    path = tmp_path_factory.mktemp("ddp") / "recipe.yaml"
    path.write_text(RECIPE.format(store=tiny_store("viper", "train")))
    return path


def _torchrun(*argv):
    proc = subprocess.run([sys.executable, *TORCHRUN, "-m", "vdatrain", *map(str, argv)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _records(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def ddp_run(recipe, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ddp-run") / "run"
    _torchrun("fit", recipe, "--run-dir", run_dir)
    return run_dir


def test_each_process_trains_on_its_own_half_of_every_batch(ddp_run):
    from flowprep.store import StoreReader

    steps = [r for r in _records(ddp_run) if "loss" in r]
    assert [r["iteration"] for r in steps] == [1, 2, 3, 4, 5, 6]
    store = json.loads((ddp_run / "recipe.json").read_text())["source"]["store"]
    ids = StoreReader(store).sample_ids
    for r in steps:
        rank0, rank1 = r["samples"]["source"]
        assert len(rank0) == len(rank1) == 2 and not set(rank0) & set(rank1)
        # together they are the batch a single process would take at this iteration
        assert rank0 + rank1 == [ids[i] for i in batch_indices(2, r["iteration"] - 1, 4, len(ids))]
    assert json.loads((ddp_run / "run.json").read_text())["processes"] == 2


def test_replicas_hold_identical_weights_at_every_checkpoint(ddp_run):
    checks = [r for r in _records(ddp_run) if "checkpoint" in r]
    assert [r["iteration"] for r in checks] == [2, 4, 6] and all(r["replicas_in_sync"] for r in checks)


def test_a_killed_distributed_run_resumes_with_the_same_losses(recipe, ddp_run, tmp_path, run_killed):
    killed = tmp_path / "killed"
    # both processes die inside iteration 5, after the checkpoint of iteration 4
    proc = run_killed("torch.optim:AdamW.step", 5, "fit", recipe, "--run-dir", killed, program="vdatrain",
                      launch=TORCHRUN)
    assert proc.returncode != 0
    assert max(r["iteration"] for r in _records(killed) if "loss" in r) == 4
    _torchrun("fit", recipe, "--run-dir", killed)
    clean = {r["iteration"]: r["loss"] for r in _records(ddp_run) if "loss" in r}
    resumed = {r["iteration"]: r["loss"] for r in _records(killed) if "loss" in r}
    assert [resumed[i] for i in (5, 6)] == [clean[i] for i in (5, 6)]


EVAL_RECIPE = """
name: tiny-sharded-eval
model: {{name: deeplabv2_check}}
source: {{store: {store}, crop: [32, 64]}}
eval: {{store: {store}, window: [38, 64], stride: [19, 32]}}
optim: {{warmup_iters: 1}}
train: {{iters: 2, batch_size: 2, checkpoint_every: 2, workers: 0, eval_every: 0}}
"""


def test_evaluation_sharded_over_processes_equals_one_process_bit_for_bit(tiny_store, tmp_path):
    """3 gloo processes over 8 images (3 + 3 + 2): confusion, mIoU, per-class IoU and temporal metrics equal."""
    from click.testing import CliRunner

    from vdatrain.cli import cli

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(EVAL_RECIPE.format(store=tiny_store("synthia-seq", "train", pairs="bwd:1")))
    assert CliRunner().invoke(cli, ["fit", str(recipe), "--run-dir", str(tmp_path / "run")]).exit_code == 0
    ckpt = tmp_path / "run/checkpoint.pt"
    one = CliRunner().invoke(cli, ["eval", str(recipe), "--ckpt", str(ckpt), "--out", str(tmp_path / "one"),
                                   "--pictures", "3"])
    assert one.exit_code == 0, one.output
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "3",
                           "-m", "vdatrain", "eval", str(recipe), "--ckpt", str(ckpt), "--out", str(tmp_path / "three"),
                           "--pictures", "3"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("one", "three"))
    assert a["temporal"]["bwd_1"]["standard"]["predconsis_miou"] > 0
    for key in ("miou", "per_class", "temporal"):
        assert a[key] == b[key], key
    import numpy as np

    np.testing.assert_array_equal(np.load(tmp_path / "one/confusion.npy"), np.load(tmp_path / "three/confusion.npy"))
    assert np.load(tmp_path / "one/confusion.npy").sum() > 0
    # the first three images' pictures, written by the process that predicted each
    assert sorted(p.name for p in (tmp_path / "three/pictures").iterdir()) == sorted(
        p.name for p in (tmp_path / "one/pictures").iterdir())
    assert proc.stdout.count("| **mIoU** |") == 1  # one process reports


def test_two_processes_give_the_one_process_teacher_and_the_same_gradients_with_one_all_reduce():
    """tests/vdatrain/ddp_checks.py under torchrun with 2 gloo processes: the teacher's pseudo-labels and weights of
    the global batch equal one process's (it predicts the global batch in each process, so its BatchNorm
    statistics and confident share are the single-GPU run's); `train_step`'s gradients (the earlier loss groups
    under no_sync, one all-reduce after the last) equal an all-reduce per group's, to float summation order."""
    proc = subprocess.run([sys.executable, *TORCHRUN, str(Path(__file__).parent / "ddp_checks.py")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    t = out["teacher"]
    assert t["labels_equal"] and t["weights_equal"] and t["confidence_diff"] < 1e-6 and 0 < t["share"] < 1
    g = out["grads"]
    assert g["groups"] == 3 and g["max_grad"] > 0 and g["max_diff"] <= 1e-6 * g["max_grad"]
