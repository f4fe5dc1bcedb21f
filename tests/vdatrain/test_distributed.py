"""`torchrun -m vdatrain fit` with 2 CPU processes (gloo): shards, replicas in sync, resume after a kill."""

import json
import subprocess
import sys

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
