"""`vdatrain check`: a recipe trains a few iterations through `fit` with every part on from the first one,
evaluates one full-size image, and reports shapes, timings, memory and the full schedule's cost."""

import json

import pytest
from click.testing import CliRunner

from vdatrain.recipe.families import architecture, cover_items, parts_of, select, shift_of
from vdatrain.cli import cli
from vdatrain.recipe import load_recipe, shipped_recipes

RECIPE = """
name: tiny-check
source: {{store: {source}, crop: [64, 64], offsets: [0, -1], flows: [bwd_1]}}
target: {{store: {target}, crop: [64, 64], offsets: [0, -1], flows: [bwd_1]}}
eval: {{store: {val}, classes: viper, window: [64, 64], stride: [32, 32]}}
model: {{name: deeplabv2_r18, hrda: {{detail_crop: [32, 32], detail_stride: [16, 16]}}, accel: {{pair: bwd_1}}}}
adapt:
  consistent_mix: true
  refine: {{strategy: consistency, pair: bwd_1, start_iter: 1500}}
  mic: {{block: 8}}
train: {{iters: 40000, batch_size: 2, seed: 3, workers: 0, eval_every: 4000}}
"""


@pytest.fixture(scope="module")
def recipe(tiny_store, tmp_path_factory):
    stores = {name: tiny_store(ds, split, offsets="-2,-1,0", pairs="bwd:1,bwd:1@-1") for name, ds, split in
              (("source", "viper", "train"), ("target", "cityscapes-seq", "train"), ("val", "cityscapes-seq", "val"))}
    path = tmp_path_factory.mktemp("check") / "recipe.yaml"
    path.write_text(RECIPE.format(**stores))
    return path


def test_a_check_trains_with_every_part_on_and_reports_what_a_gpu_booking_needs(recipe, tmp_path):
    result = CliRunner().invoke(cli, ["check", str(recipe), "--iters", "2", "--run-dir", str(tmp_path / "run"),
                                      "--json", str(tmp_path / "check.json"), "--val-images", "500"])
    assert result.exit_code == 0, result.output
    (report,) = json.loads((tmp_path / "check.json").read_text())
    assert report["ok"] and report["step"] == "done"
    assert "adapt.refine.start_iter: 1500 -> 0 (refinement from iteration 0)" in report["changes"]
    first = json.loads((tmp_path / "run/log.jsonl").read_text().splitlines()[0])
    assert first["iteration"] == 1 and {"loss/mix", "refine_kept", "loss/mic"} <= set(first)  # refinement at once
    source = report["streams"]["source"]
    assert source["batch"]["image"] == [2, 2, 3, 64, 64] and source["batch"]["flow/bwd_1"] == [2, 2, 64, 64]
    assert source["frame"] == [72, 128] and report["hrda"] == {"context": [32, 32], "detail": [32, 32],
                                                               "detail_stride": [16, 16]}
    e = report["eval"]
    assert e["image"] == [64, 128] and e["dual_frame"] and e["temporal_pairs"] == ["bwd_1"] and e["seconds"] > 0
    assert report["train_peak_gib"] > 0.1 and report["parameters"] > 1e6 and report["s_per_it"] > 0
    schedule = report["full_schedule"]
    assert schedule == {"iters": 40000, "evals": 11, "val_images": 500, "hours": pytest.approx(
        (40000 * report["s_per_it"] + 11 * 500 * e["seconds"]) / 3600)}
    assert "| tiny-check | deeplabv2_r18 | 128x72 -> 128x72 -> 64x64 x2f |" in result.output
    assert "64x32 / 32x32" not in result.output and "dual | " in result.output


def test_a_step_that_fails_is_named_with_exit_status_1(recipe, monkeypatch):
    from vdatrain.methods.self_training import SelfTraining

    def broken(*args, **kwargs):
        raise RuntimeError("shape mismatch in the mixed batch")

    monkeypatch.setattr(SelfTraining, "mix_loss", broken)  # what a geometry bug looks like
    result = CliRunner().invoke(cli, ["check", str(recipe), "--iters", "1"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "FAILED at train: RuntimeError: shape mismatch in the mixed batch" in result.output
    assert "1 of 1 checks failed: tiny-check" in result.output


def test_a_recipe_that_does_not_validate_is_exit_status_2(recipe):
    result = CliRunner().invoke(cli, ["check", str(recipe), "--set", "eval.store=/nonexistent.zarr"])
    assert result.exit_code == 2 and "eval.store" in result.output and "Traceback" not in result.output


def test_memory_modes_run_each_in_its_own_process_with_the_narrow_network(recipe, tmp_path):
    result = CliRunner().invoke(cli, ["check", str(recipe), "--iters", "1", "--narrow", "--memory-modes",
                                      "--json", str(tmp_path / "modes.json")])
    assert result.exit_code == 0, result.output
    reports = json.loads((tmp_path / "modes.json").read_text())
    assert [(r["precision"], r["checkpointing"]) for r in reports] == [
        ("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)]
    assert all(r["ok"] and r["model"] == "deeplabv2_check" for r in reports)
    assert "model.name: deeplabv2_r18 -> deeplabv2_check (narrow check network)" in reports[0]["changes"]
    assert len({r["loss"] for r in reports[:2]}) == 1  # checkpointing: the same loss
    assert "check 4/4: " in result.output
    # a narrow network's seconds say nothing about the recipe's model: no full-schedule estimate
    assert all(r["full_schedule"] is None for r in reports) and "| - (narrow) | ok |" in result.output


def test_families_cover_every_combination_of_parts_per_architecture_and_every_shift():
    names = select([], families=True)
    recipes = [load_recipe(n) for n in names]
    paper = [load_recipe(n) for n in shipped_recipes() if not n.startswith("demo")]
    assert {(architecture(r), parts_of(r)) for r in recipes} == {(architecture(r), parts_of(r)) for r in paper}
    families = {(architecture(r), parts_of(r)) for r in paper}
    assert len(families) <= len(names) <= len(families) + 6  # one each, and a few for geometries left over
    for arch in {architecture(r) for r in paper}:
        assert {shift_of(r) for r in recipes if architecture(r) == arch} == {shift_of(r) for r in paper
                                                                            if architecture(r) == arch}
    assert not any(n.startswith("demo") for n in names)
    assert {"source", "hrda", "mix:classmix", "rcs", "fd", "mic"} <= set(parts_of(load_recipe("dlv2-hrda-mic-viper-cs")))
    assert select(["dlv2-hrda-mom-*"]) == [f"dlv2-hrda-mom-{s}" for s in ("synthia-bdd", "synthia-cs", "viper-bdd",
                                                                         "viper-cs")]


def test_the_cover_checks_every_part_and_geometry_of_every_architecture_with_a_fraction_of_the_families():
    names = select([], cover=True)
    paper = [load_recipe(n) for n in shipped_recipes() if not n.startswith("demo")]
    chosen = [load_recipe(n) for n in names]
    assert set().union(*map(cover_items, chosen)) == set().union(*map(cover_items, paper))
    assert {architecture(r) for r in paper} >= {"deeplabv2_r101", "daformer_mitb5",
                                                "daformer_timm:vit_large_patch16_dinov3"}
    for arch in {architecture(r) for r in paper}:  # every part, every geometry
        assert {p for r in chosen if architecture(r) == arch for p in parts_of(r)} >= {
            p for r in paper if architecture(r) == arch for p in parts_of(r) if not p.startswith("refine:")}
        assert {shift_of(r) for r in chosen if architecture(r) == arch} == {shift_of(r) for r in paper
                                                                            if architecture(r) == arch}
    assert len(names) == len(set(names)) and 3 * len(names) <= len(select([], families=True))
    assert select(["dlv2-source-viper-cs"], cover=True)[0] == "dlv2-source-viper-cs"  # named ones first


def test_a_run_folder_is_kept_for_a_single_check_only(recipe, tmp_path):
    result = CliRunner().invoke(cli, ["check", str(recipe), "--memory-modes", "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2 and "--run-dir" in result.output and "single check" in result.output
    assert not (tmp_path / "run").exists()
