"""Extension points: a new backbone or a new pseudo-label refinement strategy is one registration, made in the
user's own file outside the package (the recipe's `imports:` brings it in), and then a recipe key that
`vdatrain fit` validates and trains with."""

import json

import pytest
import torch
import torch.nn as nn
from click.testing import CliRunner

from vdatrain.adapt.refine import REFINEMENTS, refine
from vdatrain.cli import cli
from vdatrain.models import MODELS, SegOutput
from vdatrain.models.backbone import Backbone, Level
from vdatrain.models.contract import Segmenter
from vdatrain.models.deeplabv2 import DLV2Head
from vdatrain.recipe import RecipeError, load_recipe


class TinyBackbone(Backbone):
    """A toy backbone: two strided convolutions, one level of 16 channels at stride 4 (its declaration)."""

    levels = (Level(16, 4),)

    def __init__(self):
        super().__init__()
        self.convs = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU())

    def forward(self, x):
        return [self.convs(x)]


class TinyNet(Segmenter):
    """A toy model family: the toy backbone and a DeepLabV2 head on its last level."""

    def __init__(self, num_classes: int = 19, checkpointing: bool = False, backbone=None):
        super().__init__()
        self.backbone = TinyBackbone()
        self.head = DLV2Head(self.backbone.channels[-1], num_classes)
        self.output_stride, self.num_classes = self.backbone.levels[-1].reduction, num_classes

    def attention_head(self, num_classes: int) -> nn.Module:  # what HRDA asks of a family
        return DLV2Head(self.backbone.channels[-1], num_classes)

    def forward(self, x, partner=None):
        feats = self.backbone(x)
        return SegOutput(logits=self.head(feats), features=feats[-1], feature_input=x)


def keep_where_frame_t_is_confident(c):
    """A toy strategy: frame t's label on the more confident half of its pixels (at or above the median)."""
    keep = c.conf_t >= c.conf_t.median()
    return keep, torch.zeros_like(keep)


@pytest.fixture
def registered():
    MODELS.register("tinynet")(TinyNet)
    REFINEMENTS.register("confident_t")(keep_where_frame_t_is_confident)
    try:
        yield
    finally:
        MODELS.pop("tinynet")
        REFINEMENTS.pop("confident_t")


RECIPE = """
name: toy
model: {{name: {model}, hrda: {{detail_crop: [32, 32], detail_stride: [16, 16]}}}}
source: {{store: {source}, crop: [64, 64]}}
target: {{store: {target}, crop: [64, 64], offsets: [0, -1], flows: [bwd_1]}}
adapt:
  augment: null
  refine: {{strategy: {strategy}, pair: bwd_1, invalid: frame_t, start_iter: 0}}
eval: {{store: {target}, window: [64, 128], stride: [32, 64]}}
optim: {{warmup_iters: 0}}
train: {{iters: 2, batch_size: 1, log_every: 1, checkpoint_every: 2, workers: 0, eval_every: 0}}
"""


def _recipe(tmp_path, tiny_store, model="tinynet", strategy="confident_t"):
    path = tmp_path / "toy.yaml"
    path.write_text(RECIPE.format(model=model, strategy=strategy, source=tiny_store("viper", "train"),
                                  target=tiny_store("cityscapes-seq", "val", "-1,0", "bwd:1")))
    return path


def test_a_registered_backbone_and_refinement_strategy_train_end_to_end(registered, tiny_store, tmp_path):
    recipe = _recipe(tmp_path, tiny_store)
    assert load_recipe(recipe).model.name == "tinynet"
    result = CliRunner().invoke(cli, ["fit", str(recipe), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (tmp_path / "run/log.jsonl").read_text().splitlines()]
    losses = [r for r in records if "loss" in r]
    assert [r["iteration"] for r in losses] == [1, 2] and all(r["loss/mix"] > 0 for r in losses)
    assert all(0.4 < r["refine_kept"] < 1 for r in losses)  # the toy strategy kept about half the pixels
    state = torch.load(tmp_path / "run/checkpoint.pt", weights_only=True)["model"]
    assert "attention.aspp.0.weight" in state  # HRDA wrapped the toy family with its attention head


def test_the_toy_strategy_is_what_refine_computes(registered):
    conf_t = torch.tensor([[[0.9, 0.5, 0.2]]])
    label, weight = refine("confident_t", torch.tensor([[[3, 4, 6]]]), conf_t, torch.ones(1, 1, 3),
                           torch.tensor([[[5, 5, 5]]]), torch.ones(1, 1, 3), torch.ones(1, 1, 3),
                           torch.ones(1, 1, 3, dtype=torch.bool), "frame_t")
    assert label.tolist() == [[[3, 4, 255]]] and weight.tolist() == [[[1.0, 1.0, 0.0]]]


USER_MODULE = '''
"""A user's own parts, in a file of their own: a strategy registered where vdatrain finds it."""
import torch

from vdatrain.adapt.refine import REFINEMENTS


@REFINEMENTS.register("confident_half_{tag}")
def confident_half(c):
    keep = c.conf_t >= c.conf_t.median()
    return keep, torch.zeros_like(keep)
'''


def test_a_users_module_outside_the_package_registers_through_the_recipe_and_trains(tiny_store, tmp_path):
    outside = tmp_path / "my_project"
    outside.mkdir()
    (outside / "my_parts.py").write_text(USER_MODULE.format(tag="a"))
    recipe = outside / "toy.yaml"
    recipe.write_text("imports: [my_parts.py]\n" + _recipe(tmp_path, tiny_store, model="deeplabv2_r18",
                                                           strategy="confident_half_a").read_text())
    try:
        assert load_recipe(recipe).imports == ["my_parts.py"]
        assert load_recipe(recipe).adapt.refine.strategy == "confident_half_a"  # imported once per process
        result = CliRunner().invoke(cli, ["fit", str(recipe), "--run-dir", str(tmp_path / "run")])
        assert result.exit_code == 0, result.output
        losses = [json.loads(line) for line in (tmp_path / "run/log.jsonl").read_text().splitlines()]
        assert all(0.4 < r["refine_kept"] < 1 for r in losses if "loss" in r)
    finally:
        REFINEMENTS.pop("confident_half_a", None)


@pytest.mark.parametrize("entry,message", [
    ("missing_file.py", "imports: missing_file.py: file not found"),
    ("no_such_module_xyz", "imports: no_such_module_xyz: no module named 'no_such_module_xyz'"),
    ("broken.py", "imports: broken.py: importing it failed (ZeroDivisionError"),
])
def test_a_bad_imports_entry_is_one_line_naming_it(tiny_store, tmp_path, entry, message):
    (tmp_path / "broken.py").write_text("1 / 0\n")
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(f"imports: [{entry}]\n" + _recipe(tmp_path, tiny_store, model="deeplabv2_r18",
                                                         strategy="consistency").read_text())
    result = CliRunner().invoke(cli, ["fit", str(recipe), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1 and message in result.output


def test_without_the_registration_the_names_are_one_line_errors_before_anything_is_written(tiny_store, tmp_path):
    with pytest.raises(RecipeError, match="model.name: 'tinynet' is not a registered model"):
        load_recipe(_recipe(tmp_path, tiny_store))
    result = CliRunner().invoke(cli, ["fit", str(_recipe(tmp_path, tiny_store, model="deeplabv2_r18")),
                                      "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert "adapt.refine.strategy: 'confident_t' is not a registered refinement strategy" in result.output
    assert not (tmp_path / "run").exists()
