"""Recipes compose: `base:` takes a list of parents merged in order; the shipped paper recipes are pieces."""

import gzip
import json
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from vdatrain.cli import cli
from vdatrain.recipe import RecipeError, load_recipe, merged_recipe_data, shipped_pieces, shipped_recipes

BEFORE = Path(__file__).parent / "data" / "recipes-before-composition.json.gz"


# Keys added to the schema since that commit, with the value every shipped recipe takes (where its section
# exists): the reference's behaviour, as docs/fidelity.md lists it.
ADDED = {("imports",): [], ("source", "label_resize"): "floor", ("target", "label_resize"): "floor",
         ("adapt", "mix_ignore"): "candidate", ("adapt", "teacher_statistics"): "joint",
         ("adapt", "augment", "frames"): "independent", ("adapt", "mic", "grid"): "round",
         ("adapt", "mic", "augment_draws"): "batch", ("adapt", "video_disc", "forwards"): "separate",
         ("adapt", "video_disc", "judge"): "fused", ("adapt", "video_disc", "own_loss_scale"): 0.1,
         ("eval", "window_batch"): 3, ("train", "tf32"): True, ("train", "cudnn_benchmark"): True,
         ("train", "channels_last"): False, ("model", "backbone"): None, ("optim", "layer_decay"): 1.0}


def changed_since(name: str, recipe: dict) -> dict:
    """Values the paper recipes changed on purpose since that commit, to follow the reference code
    (docs/fidelity.md): every ACCEL recipe mixes frame t+k with frame t's mask (the reference's only ACCEL
    path), and an ACCEL student judged by the video discriminator reads frame t+2k and its flow."""
    from vdatrain.recipe.load import data_home

    # data_root: the shipped recipes' relative roots now lie under the data home, not the current folder
    root = {"data/stores": "stores", "demo-data/stores": "demo/stores"}[recipe["data_root"]]
    out = {("data_root",): str(data_home() / root)}
    for key in ("pretrained", "init"):  # weights too: under the data home
        if recipe["model"].get(key):
            out[("model", key)] = str(data_home() / recipe["model"][key].replace("demo-data/", "demo/"))
    for part in ("source", "target", "eval"):
        if recipe.get(part):
            out[(part, "store")] = str(data_home() / root / Path(recipe[part]["store"]).name)
    if recipe["model"].get("accel") and recipe.get("adapt"):
        out[("adapt", "consistent_mix")] = True
        if recipe["adapt"].get("video_disc"):
            for part in ("source", "target"):
                k = -recipe[part]["offsets"][1]
                out[(part, "offsets")] = [0, -k, -2 * k]
                out[(part, "flows")] = [f"bwd_{k}", f"bwd_{k}_at_m{k}"]
    return out


def _node(recipe: dict, path: tuple):
    node = recipe
    for key in path[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def _without_added(recipe: dict) -> dict:
    out = json.loads(json.dumps(recipe))
    for path, value in ADDED.items():
        node = _node(out, path)
        if node is not None and path[-1] in node:
            assert node.pop(path[-1]) == value, (recipe["name"], path)
    return out


def test_every_shipped_recipe_is_what_it_was_before_the_recipes_were_composed():
    """The recipes of commit cb2ec11 (one file per recipe, one parent at most), validated, as JSON: composing
    them from pieces changed no value of any of them (keys the schema gained since take the values in ADDED;
    values changed to follow the reference code are those of `changed_since`)."""
    before = json.loads(gzip.decompress(BEFORE.read_bytes()))
    now = {name: _without_added(asdict(load_recipe(name))) for name in shipped_recipes()
           if not name.startswith("dinov3") and name != "demo-vfm"}
    now_all = set(shipped_recipes())
    added = sorted(now_all - set(before))  # recipes shipped since: the foundation-model backbones
    assert set(before) <= now_all and all(n.startswith("dinov3") or n == "demo-vfm" for n in added), added
    for name in before:
        for path, value in changed_since(name, before[name]).items():
            _node(before[name], path)[path[-1]] = value
        assert now[name] == before[name], name


def test_parents_merge_in_order_then_the_file_and_a_name_is_never_inherited(tmp_path):
    (tmp_path / "a.yaml").write_text("name: a\nmodel: {name: deeplabv2_r18, num_classes: 5}\ntrain: {iters: 10}\n")
    (tmp_path / "b.yaml").write_text("train: {iters: 20, seed: 3}\n")
    (tmp_path / "mine.yaml").write_text(
        "base: [a, b.yaml, shift/viper-cs]\ntrain: {seed: 4}\n")
    r = load_recipe(tmp_path / "mine.yaml")
    assert r.name == "mine"  # the file's stem: not "a"
    assert r.model.num_classes == 5 and r.train.iters == 40000  # shift/viper-cs's paper schedule came last
    assert r.train.seed == 4 and r.source.store.endswith("viper_train.zarr")
    (tmp_path / "mine.yaml").write_text("base: [shift/viper-cs, a, b]\n")
    r = load_recipe(tmp_path / "mine.yaml")
    assert (r.train.iters, r.train.seed, r.train.batch_size) == (20, 3, 2)  # b over a over the piece


def test_a_base_that_is_nothing_known_is_one_line_naming_the_file(tmp_path):
    (tmp_path / "r.yaml").write_text("base: [shift/viper-cs, ../../etc/passwd]\nname: r\n")
    with pytest.raises(RecipeError, match=r"r\.yaml: base: '../../etc/passwd' is not a file beside r\.yaml"):
        load_recipe(tmp_path / "r.yaml")
    (tmp_path / "r.yaml").write_text("base: {a: 1}\n")
    with pytest.raises(RecipeError, match="base: expected a recipe or piece name, or a list of them"):
        load_recipe(tmp_path / "r.yaml")


def test_pieces_are_not_recipes_and_every_piece_is_used():
    assert not set(shipped_pieces()) & set(shipped_recipes())
    used = set()
    for path in shipped_recipes().values():
        base = yaml.safe_load(path.read_text()).get("base", [])
        used |= set([base] if isinstance(base, str) else base)
    for path in shipped_pieces().values():
        base = yaml.safe_load(path.read_text()).get("base", [])
        used |= set([base] if isinstance(base, str) else base)
    assert set(shipped_pieces()) <= used


def test_recipes_show_prints_the_merged_recipe_that_loads_as_the_same_recipe(tmp_path):
    result = CliRunner().invoke(cli, ["recipes", "--show", "dlv2-hrda-mic-viper-bdd", "--set", "train.seed=2"])
    assert result.exit_code == 0, result.output
    data = yaml.safe_load(result.stdout)
    assert "base" not in data and data["name"] == "dlv2-hrda-mic-viper-bdd" and data["train"]["seed"] == 2
    assert data == merged_recipe_data("dlv2-hrda-mic-viper-bdd", ["train.seed=2"])
    (tmp_path / "shown.yaml").write_text(result.stdout)
    shown, shipped = load_recipe(tmp_path / "shown.yaml"), load_recipe("dlv2-hrda-mic-viper-bdd", ["train.seed=2"])
    assert asdict(shown) == asdict(shipped)
    listed = CliRunner().invoke(cli, ["recipes", "--pieces"])
    assert listed.exit_code == 0 and "shift/viper-bdd" in listed.stdout and "arch/segformer" in listed.stdout


def test_a_shipped_recipe_file_states_only_what_is_its_own():
    """Composed from pieces, the shipped YAML of the recipes of that commit is less than half of the 2,887 lines it
    was."""
    before = json.loads(gzip.decompress(BEFORE.read_bytes()))
    files = [*(p for n, p in shipped_recipes().items() if n in before),
             *(p for n, p in shipped_pieces().items() if not n.startswith("arch/dinov3"))]
    assert sum(len(p.read_text().splitlines()) for p in files) < 2887 / 2
