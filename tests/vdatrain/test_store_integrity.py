"""What training and evaluation read is what the store promised: incomplete samples are listed, never dropped
silently; a flipped byte stops the run naming the file (train.verify_reads); a store of another dataset under
a recipe's store name is refused before anything runs."""

import json
import shutil

import pytest
from click.testing import CliRunner

from vdatrain.cli import cli

RECIPE = """
name: integrity
model: {{name: deeplabv2_check}}
source: {{store: {store}, crop: [32, 64]}}
eval: {{store: {store}, window: [64, 128], stride: [32, 64]}}
optim: {{warmup_iters: 1}}
train: {{iters: 2, batch_size: 2, log_every: 1, checkpoint_every: 2, workers: 1, eval_every: 0}}
"""


@pytest.fixture
def store(tiny_store, tmp_path):
    """A private copy of the tiny Cityscapes-Seq val store (two samples), for the test to damage."""
    return shutil.copytree(tiny_store("cityscapes-seq", "val"), tmp_path / "cityscapes-seq_val.zarr")


def recipe(tmp_path, store):
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE.format(store=store))
    return path


def drop_record(store, index):
    """Sample `index` loses its checksum record: what a write killed before its end leaves."""
    (store / f"_checksums/base/c/{index}/0/0").unlink()


def test_eval_lists_an_incomplete_sample_as_skipped(store, tmp_path):
    r = recipe(tmp_path, store)
    assert CliRunner().invoke(cli, ["fit", str(r), "--run-dir", str(tmp_path / "run")]).exit_code == 0
    drop_record(store, 1)
    result = CliRunner().invoke(cli, ["eval", str(r), "--ckpt", str(tmp_path / "run/checkpoint.pt"),
                                      "--out", str(tmp_path / "eval"), "--pictures", "0"])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "eval/results.json").read_text())
    assert saved["skipped"] == ["lindau_000000_000019 (incomplete in the store: no checksum record)"]
    assert "1 samples or temporal pairs skipped" in result.output


def test_fit_logs_the_samples_it_leaves_out(store, tmp_path):
    drop_record(store, 0)
    result = CliRunner().invoke(cli, ["fit", str(recipe(tmp_path, store)), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "warning: 1 source samples left out of training (frankfurt_000000_000294: incomplete" in result.output
    records = [json.loads(line) for line in (tmp_path / "run/log.jsonl").read_text().splitlines()]
    assert {"iteration": 0, "skipped": {"source": {
        "frankfurt_000000_000294": "incomplete in the store (no checksum record)"}}} in records
    trained = {s for r in records if "samples" in r for rank in r["samples"]["source"] for s in rank}
    assert trained == {"lindau_000000_000019"}


def test_a_flipped_byte_stops_training_and_evaluation_naming_the_file_when_reads_are_verified(store, tmp_path):
    r = recipe(tmp_path, store)
    assert CliRunner().invoke(cli, ["fit", str(r), "--run-dir", str(tmp_path / "ok")]).exit_code == 0
    chunks = [store / f"frames/c/{i}/2/0/0/0" for i in (0, 1)]  # frame t of both samples
    for chunk in chunks:
        data = bytearray(chunk.read_bytes())
        data[100] ^= 0x10
        chunk.write_bytes(bytes(data))
    fit = CliRunner().invoke(cli, ["fit", str(r), "--run-dir", str(tmp_path / "run"), "--set", "train.verify_reads=true"])
    assert fit.exit_code == 2, fit.output
    line = fit.output.strip().splitlines()[-1]  # raised in a DataLoader worker: its message, not its traceback
    assert line.startswith("error: ") and "does not match its checksum record" in line and "Traceback" not in fit.output
    assert any(str(c) in line for c in chunks)
    ev = CliRunner().invoke(cli, ["eval", str(r), "--ckpt", str(tmp_path / "ok/checkpoint.pt"), "--out",
                                  str(tmp_path / "eval"), "--set", "train.verify_reads=true"])
    assert ev.exit_code == 2 and "does not match its checksum record" in ev.output
    # unverified reads cannot see it: the default trusts the store (`flowprep verify` checks it whole)
    assert CliRunner().invoke(cli, ["fit", str(r), "--run-dir", str(tmp_path / "trusting")]).exit_code == 0


def test_a_store_of_another_dataset_under_the_recipes_store_name_is_refused(store, tmp_path):
    wrong = shutil.copytree(store, tmp_path / "viper_train.zarr")
    result = CliRunner().invoke(cli, ["fit", str(recipe(tmp_path, wrong)), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert result.output.strip() == (f"error: source.store: {wrong} is named for viper train but holds "
                                      f"cityscapes-seq val (a store copied under another name?)")
    assert not (tmp_path / "run").exists()
