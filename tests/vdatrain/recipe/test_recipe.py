"""Recipes are validated before anything runs; every error names the dotted key."""

from pathlib import Path

import pytest
import yaml

from flowprep.store import StoreSpec, create_store
from vdatrain.recipe import RecipeError, check_paths, load_recipe

GOOD = """
name: source-only-viper-to-cs
model: {name: deeplabv2_r18, num_classes: 19}
source: {store: STORE, crop: [64, 64], scale: 1.5, max_class_ratio: 0.75}
eval: {store: STORE, classes: viper, protocol: unifiedvideoda, window: [64, 128], stride: [32, 64]}
train: {iters: 10, precision: bf16}
"""


def _write(tmp_path, text):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_a_valid_recipe_loads_with_defaults(tmp_path):
    r = load_recipe(_write(tmp_path, GOOD))
    assert r.source.crop == (64, 64) and r.source.scale == 1.5 and r.source.offsets == [0]
    assert r.eval.protocol == "unifiedvideoda" and r.optim.lr == 6e-5 and r.optim.betas == (0.9, 0.999)
    assert r.train.iters == 10 and r.target is None


@pytest.mark.parametrize("edit,message", [
    (("train: {iters: 10, precision: bf16}", "train: {iters: 10, itres: 5}"), "train.itres: unknown key"),
    (("train: {iters: 10, precision: bf16}", "train: {iters: ten}"), "train.iters: expected int, got 'ten'"),
    (("train: {iters: 10, precision: bf16}", "train: {precision: fp8}"), "train.precision: 'fp8' is not one of"),
    (("crop: [64, 64]", "crop: [64]"), "source.crop: expected 2 values, got 1"),
    (("max_class_ratio: 0.75}", "max_class_ratio: 0.75, margins: 'False'}"), "source.margins: expected true or false, got 'False'"),
    (("name: source-only-viper-to-cs\n", "name: [a, b]\n"), "name: expected str"),
    (("eval: {store: STORE,", "evaluation: {store: STORE,"), "evaluation: unknown key"),
])
def test_bad_recipes_name_the_key(tmp_path, edit, message):
    old, new = edit
    assert old in GOOD
    with pytest.raises(RecipeError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_recipe(_write(tmp_path, GOOD.replace(old, new)))


def test_overrides_are_validated_like_the_file(tmp_path):
    path = _write(tmp_path, GOOD)
    r = load_recipe(path, ["train.iters=200", "source.flows=[bwd_1]", "optim.grad_clip=10"])
    assert r.train.iters == 200 and r.source.flows == ["bwd_1"] and r.optim.grad_clip == 10.0
    with pytest.raises(RecipeError, match="train.iters: expected int, got 'many'"):
        load_recipe(path, ["train.iters=many"])
    with pytest.raises(RecipeError, match="write key=value"):
        load_recipe(path, ["train.iters"])


def test_missing_stores_and_weights_are_errors_naming_the_key(tmp_path):
    r = load_recipe(_write(tmp_path, GOOD.replace("STORE", str(tmp_path / "missing.zarr"))))
    with pytest.raises(RecipeError, match=r"source.store: .*missing.zarr: no store here"):
        check_paths(r)
    store = tmp_path / "s.zarr"
    create_store(store, StoreSpec(dataset="x", split="train", classes=["a", "b"], height=48, width=48, sample_ids=["0"]))
    r = load_recipe(_write(tmp_path, GOOD.replace("STORE", str(store))), ["model.pretrained=/nowhere/r18.pth"])
    with pytest.raises(RecipeError, match="model.pretrained: /nowhere/r18.pth: file not found"):
        check_paths(r)
    check_paths(r, weights=False)  # evaluation takes its weights from the checkpoint
    check_paths(load_recipe(_write(tmp_path, GOOD.replace("STORE", str(store)))))  # all present: no error


@pytest.mark.parametrize("override,message", [
    ("optim.lr=-1", "optim.lr: -1.0 must be > 0"),
    ("optim.weight_decay=-1", "optim.weight_decay: -1.0 must be >= 0"),
    ("train.batch_size=0", "train.batch_size: 0 must be > 0"),
    ("train.checkpoint_every=0", "train.checkpoint_every: 0 must be > 0"),
    ("train.iters=-5", "train.iters: -5 must be > 0"),
    ("source.crop=[-5,64]", "source.crop[0]: -5 must be > 0"),
    ("adapt={pseudo_threshold: 2}", "adapt.pseudo_threshold: 2.0 must be <= 1"),
    ("model.name=resnet9000", "model.name: 'resnet9000' is not a registered model (choose from "),
    ("adapt={refine: {strategy: oracel}}", "adapt.refine.strategy: 'oracel' is not a registered refinement strategy"),
    ("adapt={mix: cutmix}", "adapt.mix: 'cutmix' is not a registered mix strategy (choose from none, classmix)"),
    ("train.iters=[1,", "--set train.iters: '[1,' is not a YAML value"),
    ("model.hrda={detail_crop: [128, 32]}", "model.hrda.detail_crop: [128, 32] does not fit inside source.crop [64, 64]"),
    ("model.hrda={detail_crop: [32, 32], box_grid: 12}",
     "model.hrda.box_grid: 12 is not a multiple of the model's output stride 8: the detail logits would be misplaced"),
    ("model.hrda={detail_crop: [36, 36], box_grid: 8}",
     "model.hrda.detail_crop: [36, 36] is not a multiple of the model's output stride 8"),
    # a single-scale ViT: logits at its patch stride 16, so the paper's 8-pixel box grid would misplace them
    ("model={name: daformer_timm, backbone: {timm: vit_small_patch16_dinov3, pyramid: none, depth: 1}, "
     "hrda: {detail_crop: [32, 32]}}",
     "model.hrda.box_grid: 8 is not a multiple of the model's output stride 16"),
    # a hierarchical timm model does not pad: crops are multiples of its largest reduction
    ("model={name: daformer_timm, backbone: {timm: convnext_atto}, hrda: {detail_crop: [48, 48]}}",
     "model.hrda.detail_crop: [48, 48] is not a multiple of 32, which the backbone convnext_atto needs"),
    ("model={name: daformer_timm}", "model.backbone: daformer_timm needs one"),
    ("model.backbone={timm: vit_small_patch16_dinov3}", "model.backbone: only the timm family"),
    ("model={name: daformer_timm, backbone: {timm: no_such_vit}}", "model.backbone.timm: Unknown model (no_such_vit)"),
])
def test_values_out_of_range_are_one_line_errors_before_anything_is_written(tmp_path, override, message):
    from click.testing import CliRunner

    from vdatrain.cli import cli

    path = _write(tmp_path, GOOD.replace("train: {iters: 10, precision: bf16}",
                                         "target: {store: STORE}\ntrain: {iters: 10}"))
    result = CliRunner().invoke(cli, ["fit", str(path), "--set", override, "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_a_crop_larger_than_the_resized_frames_is_named_before_training(tmp_path):
    store = tmp_path / "small.zarr"
    create_store(store, StoreSpec(dataset="x", split="train", classes=["a", "b"], height=32, width=48, sample_ids=["0"]))
    r = load_recipe(_write(tmp_path, GOOD.replace("STORE", str(store))))  # crop 64 from 48x72 (x1.5)
    with pytest.raises(RecipeError, match=r"source.crop: \[64, 64\] does not fit the 48x72 frames of .*small.zarr "
                                          r"\(32x48 resized by source.scale 1.5\)"):
        check_paths(r)


def test_store_paths_are_relative_to_data_root(tmp_path):
    r = load_recipe(_write(tmp_path, GOOD.replace("STORE", "cs.zarr")), ["data_root=/mnt/stores"])
    assert r.source.store == "/mnt/stores/cs.zarr" and r.eval.store == "/mnt/stores/cs.zarr"


def test_data_root_never_depends_on_the_current_folder_except_on_the_command_line(tmp_path, monkeypatch):
    """Relative to the recipe file that sets it (or that file's folder when none does); shipped recipes: under
    the data home ($VDATRAIN_DATA); `--set data_root=` relative to the current folder."""
    (tmp_path / "recipes").mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("VDATRAIN_DATA", str(tmp_path / "home"))
    plain = _write(tmp_path / "recipes", GOOD.replace("STORE", "cs.zarr"))
    assert load_recipe(plain).source.store == str(tmp_path / "recipes" / "cs.zarr")
    rooted = tmp_path / "recipes" / "rooted.yaml"
    rooted.write_text("base: recipe\ndata_root: ../stores\n")
    assert Path(load_recipe(rooted).source.store).resolve() == tmp_path / "stores" / "cs.zarr"
    assert load_recipe(rooted, ["data_root=here"]).source.store == str(elsewhere / "here" / "cs.zarr")
    assert load_recipe("dlv2-hrda-mic-viper-cs").source.store == str(tmp_path / "home" / "stores" / "viper_train.zarr")
    assert load_recipe("demo").eval.store == str(tmp_path / "home" / "demo" / "stores" / "cityscapes-seq_val.zarr")
    assert load_recipe("dlv2-source-viper-cs").model.pretrained == str(tmp_path / "home" / "weights" / "resnet101_v1c.pth")
    assert load_recipe(plain, ["model.init=run/checkpoint.pt"]).model.init == str(elsewhere / "run" / "checkpoint.pt")


def test_every_shipped_recipe_validates_and_names_its_stores():
    from vdatrain.recipe import shipped_recipes

    shipped = shipped_recipes()
    shifts = [f"{s}-{t}" for s in ("viper", "synthia") for t in ("cs", "bdd")]
    rows = ("source", "oracle", "hrda-mic", "hrda", "dacs-rcs-fd", "dacs-fd", "dacs")
    paper = {f"{arch}-{row}-{shift}" for arch in ("dlv2", "segformer") for row in rows for shift in shifts}
    assert {"demo", "demo-hrda-mic", "demo-hrda", "demo-oracle"} | paper <= set(shipped)
    for name in shipped:
        r = load_recipe(name)  # by name, as `vdatrain fit NAME`
        assert r.name == name and r.description
        assert r.eval.classes == ("synthia-seq" if "synthia" in name else "viper")
    bdd = load_recipe("dlv2-source-synthia-bdd")
    assert bdd.source.crop == (720, 720) and bdd.eval.window == (720, 720) and bdd.source.scale == 2.0


def test_paper_recipes_switch_exactly_the_ablated_part():
    full = load_recipe("segformer-hrda-mic-viper-cs")
    assert full.model.name == "daformer_mitb5" and full.model.hrda.detail_crop == (512, 512)
    assert full.adapt.rcs.min_crop_ratio == 2.0 and full.adapt.fd.weight == 0.005 and 12 not in full.adapt.fd.classes
    assert full.adapt.mic.block == 64 and full.target.margins
    ablations = {"hrda": ("mic",), "dacs-rcs-fd": ("mic", "hrda"), "dacs-fd": ("mic", "hrda", "rcs"),
                 "dacs": ("mic", "hrda", "rcs", "fd")}
    for row, removed in ablations.items():
        r = load_recipe(f"segformer-{row}-viper-cs")
        parts = {"mic": r.adapt.mic, "hrda": r.model.hrda, "rcs": r.adapt.rcs, "fd": r.adapt.fd}
        assert {k for k, v in parts.items() if v is None} == set(removed), row
    bdd = load_recipe("dlv2-hrda-mic-synthia-bdd")
    assert bdd.model.hrda.detail_crop == (360, 360) and not bdd.target.margins and 12 in bdd.adapt.fd.classes


def test_adaptation_needs_a_target(tmp_path):
    with pytest.raises(RecipeError, match="adapt: needs a target section"):
        load_recipe(_write(tmp_path, GOOD + "adapt: {}\n"))


def test_an_unknown_recipe_name_says_where_to_look():
    with pytest.raises(RecipeError, match="vdatrain recipes"):
        load_recipe("no-such-recipe")


def test_a_base_recipe_is_merged_section_by_section(tmp_path):
    (tmp_path / "base.yaml").write_text(GOOD)
    child = _write(tmp_path, "base: base.yaml\nname: child\nsource: {offsets: [0, -1], flows: [bwd_1]}\n"
                             "train: {iters: 20}\n")
    r = load_recipe(child)
    assert r.name == "child" and r.source.offsets == [0, -1] and r.source.crop == (64, 64)  # merged, not replaced
    assert r.train.iters == 20 and r.train.precision == "bf16"
    shipped = load_recipe("demo-hrda-mic-mom")  # a shipped recipe built on shipped bases
    assert shipped.model.accel.pair == "bwd_1" and shipped.adapt.consistent_mix and shipped.adapt.mic is not None
    loop = _write(tmp_path, "base: recipe.yaml\nname: x\n")
    with pytest.raises(RecipeError, match="include each other"):
        load_recipe(loop)


@pytest.mark.parametrize("video,message", [
    ("model: {name: deeplabv2_r18, accel: {pair: bwd_1}}",
     r"model.accel.pair: bwd_1 needs source.flows to list it and source.offsets to hold -1"),
    ("target: {store: STORE, offsets: [0, -1], flows: [bwd_1]}\nadapt: {refine: {pair: fwd_1}}",
     r"adapt.refine.pair: fwd_1 needs target.flows"),
    ("target: {store: STORE}\nadapt: {refine: {pair: sideways}}", "adapt.refine.pair: 'sideways' is not a flow pair"),
    ("target: {store: STORE}\nadapt: {consistent_mix: true}", "adapt.consistent_mix: needs model.accel"),
    ("target: {store: STORE, offsets: [0, -1], flows: [bwd_1_at_m1]}\nadapt: {refine: {pair: bwd_1_at_m1}}",
     "adapt.refine.pair: bwd_1_at_m1 starts at frame -1"),
])
def test_video_parts_name_the_flow_pair_they_miss(tmp_path, video, message):
    text = GOOD.replace("model: {name: deeplabv2_r18, num_classes: 19}\n", "") + video + "\n"
    if "model:" not in video:
        text += "model: {name: deeplabv2_r18}\n"
    with pytest.raises(RecipeError, match=message):
        load_recipe(_write(tmp_path, text))



def test_video_paper_recipes_add_exactly_their_video_parts_to_the_image_recipe():
    from dataclasses import replace

    from vdatrain.recipe import shipped_recipes

    shipped = shipped_recipes()
    shifts = [f"{s}-{t}" for s in ("viper", "synthia") for t in ("cs", "bdd")]
    for shift in shifts:
        pair = "bwd_2" if shift.endswith("bdd") else "bwd_1"  # BDDVid frames are t, t-2, t-4
        tps, davsn, udavss, mom = (load_recipe(f"dlv2-hrda-{m}-{shift}") for m in ("tps", "davsn", "udavss", "mom"))
        assert tps.model.accel.pair == pair and tps.adapt.refine.strategy == "warp_frame" and not tps.adapt.video_disc
        assert davsn.model.accel and davsn.adapt.video_disc.weight == 1e-4 and davsn.adapt.refine.strategy == "max_confidence"
        assert udavss.model.accel is None and udavss.adapt.video_disc and udavss.adapt.refine.strategy == "consistency"
        assert mom.model.accel and mom.adapt.consistent_mix and mom.adapt.refine.strategy == "consistency"
        assert mom.adapt.refine.start_iter == 1500 and mom.adapt.refine.pair == pair
        assert tps.model.accel.source_pair == (None if pair == "bwd_1" else "bwd_1")
        for custom in ("vdisc", "accel-cmix", "vdisc-accel-cmix", "vdisc-accel-cmix-consistency", "pl-consistency-bwd"):
            assert f"dlv2-hrda-{custom}-{shift}" in shipped
    studies = [n for n in shipped if "-pl-" in n and n.endswith("-cs") and n.startswith(("dlv2", "segformer"))]
    assert len(studies) == 2 * 2 * 4 * 2 * 2  # architecture x MIC x strategy x direction x source
    for name in [*studies, *(n for n in shipped if n.startswith("dlv2-hrda-") and n.endswith("bdd"))]:
        r = load_recipe(name)
        parents = yaml.safe_load(shipped[name].read_text()).get("base", name)
        base = load_recipe(parents if isinstance(parents, str) else name)  # a composed root is its own base
        stripped = replace(r, name=base.name, label=base.label, description=base.description,
                           model=replace(r.model, accel=None),
                           adapt=replace(r.adapt, refine=None, video_disc=None, consistent_mix=False),
                           source=replace(r.source, offsets=[0], flows=[]),
                           target=replace(r.target, offsets=[0], flows=[]))
        assert stripped == base, name


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        out |= _flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v}
    return out


def test_paper_recipes_take_the_reference_codes_values_and_paper_text_recipes_differ_only_in_named_keys():
    """docs/fidelity.md: every paper recipe computes what the reference code did; where the paper's text says
    otherwise, a `*-paper-text` recipe changes exactly that key."""
    from dataclasses import asdict

    from vdatrain.recipe import shipped_recipes

    shipped = shipped_recipes()
    paper = [n for n in shipped if not n.startswith("demo") and not n.endswith("-paper-text")]
    for name in paper:
        r = load_recipe(name)
        assert r.optim.norm_weight_decay == "by_name", name
        if r.model.accel:
            assert r.model.accel.fusion_lr == "backbone", name
        if r.adapt is None:
            continue
        augment = r.adapt.augment
        assert (augment.jitter, augment.blur_kernel, augment.coins) == ("kornia05", "round_down", "batch"), name
        if r.adapt.refine:
            refine = r.adapt.refine
            assert (refine.invalid, refine.weight) == ("reference_strips", "warped"), name
            assert refine.strategy in ("consistency", "max_confidence", "warp_frame", "oracle_warped"), name
        if r.adapt.video_disc:
            disc = r.adapt.video_disc
            assert (disc.weight, disc.softmax, disc.scale) == (1e-4, "joint", 0.5), name
    texts = sorted(n for n in shipped if n.endswith("-paper-text"))
    oracles = [n for n in paper if "-pl-oracle-" in n]
    discs = [n for n in paper if load_recipe(n).adapt and load_recipe(n).adapt.video_disc]
    assert len(oracles) == 16 and len(discs) == 20
    assert texts == sorted(f"{n}-paper-text" for n in oracles + discs)
    for name in texts:
        text, code = _flat(asdict(load_recipe(name))), _flat(asdict(load_recipe(name.removesuffix("-paper-text"))))
        changed = {k for k in text if text[k] != code[k]} - {"name", "label", "description"}
        assert changed in ({"adapt.refine.strategy"}, {"adapt.video_disc.weight"}), (name, changed)
        assert text.get("adapt.refine.strategy") in (None, "oracle") or "adapt.refine.strategy" not in changed
        assert text["label"].endswith("(paper text)")


@pytest.mark.parametrize("spelling,value", [("6e-5", 6e-5), ("1e12", 1e12), ("1.0e12", 1e12), ("6.0e-05", 6e-5),
                                            ("1E-3", 1e-3)])
def test_numbers_are_read_in_every_common_spelling_in_files_and_in_set(tmp_path, spelling, value):
    (tmp_path / "r.yaml").write_text(f"base: dlv2-source-viper-cs\noptim: {{lr: {spelling}}}\n")
    assert load_recipe(tmp_path / "r.yaml").optim.lr == value
    assert load_recipe("dlv2-source-viper-cs", [f"optim.lr={spelling}"]).optim.lr == value


@pytest.mark.parametrize("key,raw,message", [
    ("optim.lr", "fast", "--set optim.lr: expected a number, got 'fast'"),
    ("optim.lr", ".nan", "--set optim.lr: nan is not a finite number"),
    ("optim.weight_decay", ".inf", "--set optim.weight_decay: inf is not a finite number"),
    ("source.scale", ".nan", "--set source.scale: nan is not a finite number"),
    ("optim.betas", "[.nan, 0.9]", "--set optim.betas[0]: nan is not a finite number"),
    ("adapt.pseudo_threshold", ".nan", "--set adapt.pseudo_threshold: nan is not a finite number"),
])
def test_a_value_that_is_not_a_finite_number_names_the_set_it_came_from(key, raw, message):
    with pytest.raises(RecipeError) as e:
        load_recipe("dlv2-hrda-mic-viper-cs", [f"{key}={raw}"])
    assert str(e.value) == message


def test_hostile_recipe_files_are_refused_in_one_line_within_seconds(tmp_path):
    import time

    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join('*' + p for _ in range(10))}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
    (tmp_path / "bomb.yaml").write_text(bomb + "name: x\n")
    start = time.perf_counter()
    with pytest.raises(RecipeError, match="more than 64 aliases"):
        load_recipe(tmp_path / "bomb.yaml")
    assert time.perf_counter() - start < 5
    (tmp_path / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(RecipeError, match="not a text file"):
        load_recipe(tmp_path / "binary.yaml")
    for k in range(40):  # a chain of 40 base: files
        (tmp_path / f"c{k}.yaml").write_text(f"base: c{k + 1}\n" if k < 39 else "name: end\n")
    with pytest.raises(RecipeError, match="a chain of more than 32 recipes"):
        load_recipe(tmp_path / "c0.yaml")


def test_a_yaml_tag_naming_python_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    path = _write(tmp_path, GOOD + f'extra: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(RecipeError, match="recipe.yaml"):
        load_recipe(path)
    assert not marker.exists()
