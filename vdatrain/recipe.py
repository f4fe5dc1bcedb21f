"""Recipes: YAML validated against a typed schema before anything runs.

A recipe is data. `load_recipe` reads YAML (a `base: NAME` key first loads that
recipe and merges this file's sections into it, mapping by mapping, so a paper
variant states only what it changes), applies `--set key=value` overrides
(dotted keys, values parsed as YAML), and builds the dataclasses below, checking
every value against its annotation. An unknown key, a missing required key or a
wrong type is a `RecipeError` naming the dotted key; booleans must be real YAML
booleans (the reference's `type=bool` flags read "False" as true). `check_paths`
then makes sure every store and weight file exists.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Optional

import yaml


class RecipeError(ValueError):
    """A recipe problem; the message names the file and the dotted key."""


@dataclass(frozen=True)
class Bounds:
    """The range a number must lie in (checked with its type; the error names the key)."""
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False  # lo itself excluded

    def check(self, value, key: str) -> None:
        if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
            raise RecipeError(f"{key}: {value!r} must be {'>' if self.lo_open else '>='} {self.lo:g}")
        if self.hi is not None and value > self.hi:
            raise RecipeError(f"{key}: {value!r} must be <= {self.hi:g}")


PosInt = Annotated[int, Bounds(0, lo_open=True)]
NonNegInt = Annotated[int, Bounds(0)]
PosFloat = Annotated[float, Bounds(0, lo_open=True)]
NonNegFloat = Annotated[float, Bounds(0)]
Fraction = Annotated[float, Bounds(0, 1)]  # probabilities, shares, weights of a convex mix
OpenFraction = Annotated[float, Bounds(0, 1, lo_open=True)]  # (0, 1]: scales below one


@dataclass
class DataSpec:
    store: str  # a flowprep store
    crop: tuple[PosInt, PosInt] = (512, 512)  # (h, w) after resizing
    scale: PosFloat = 1.0  # resize before cropping (VIPER 4/3, Synthia 2)
    offsets: list[int] = field(default_factory=lambda: [0])
    flows: list[str] = field(default_factory=list)
    max_class_ratio: Optional[OpenFraction] = None  # source crops: 0.75 in the paper
    margins: bool = False  # pseudo-label margin mask (Cityscapes targets)


@dataclass
class HRDASpec:
    """Multi-resolution fusion (`vdatrain/models/hrda.py`); BDD targets: detail_crop 360, detail_stride 180."""
    context_scale: OpenFraction = 0.5
    detail_crop: tuple[PosInt, PosInt] = (512, 512)  # training detail box; inference detail windows
    detail_stride: tuple[PosInt, PosInt] = (256, 256)  # inference detail windows
    detail_loss_weight: Fraction = 0.1  # L = (1 - w) CE(fused) + w CE(detail)
    box_grid: PosInt = 8  # detail box corners on this pixel lattice


@dataclass
class ACCELSpec:
    """Two-frame model (`vdatrain/models/accel.py`): frame t fused with frame t+k's warped logits.
    Source, target and eval stores need the pair's flow and frame (source/target `offsets`, `flows`)."""
    pair: str = "bwd_1"  # target and eval flow from frame t to the other frame (bwd_1: t -> t-1; BDDVid: bwd_2)
    source_pair: Optional[str] = None  # the source's, when its frame distance differs (VIPER -> BDDVid: bwd_1)
    fusion_lr: Literal["backbone", "head"] = "backbone"  # the fusion conv's rate (reference: not under "head")


@dataclass
class ModelSpec:
    name: str = "deeplabv2_r101"
    num_classes: PosInt = 19
    pretrained: Optional[str] = None  # ImageNet backbone weights (local file)
    init: Optional[str] = None  # whole-model weights to start from: a vdatrain or mmseg checkpoint
    hrda: Optional[HRDASpec] = None
    accel: Optional[ACCELSpec] = None
    checkpointing: bool = False  # activation checkpointing of the backbone stages: less memory, same results


@dataclass
class AugmentSpec:
    """DACS strong augmentation of mixed and MIC images (`vdatrain/adapt/augment.py`); defaults: the reference's."""
    jitter_p: Fraction = 0.8  # colour jitter applied with this probability
    brightness: NonNegFloat = 0.2  # additive, on 0..1 intensities
    contrast: Fraction = 0.2
    saturation: Fraction = 0.2
    hue: Annotated[float, Bounds(0, 0.5)] = 0.2
    blur_p: Fraction = 0.5
    blur_sigma: tuple[PosFloat, PosFloat] = (0.15, 1.15)
    # kornia05: the reference's kornia 0.5 ops (contrast multiplies, saturation scales HSV's S);
    # torchvision: blend-based contrast and saturation (PIL's definitions)
    jitter: Literal["kornia05", "torchvision"] = "kornia05"
    blur_kernel: Literal["round_down", "round_up"] = "round_down"  # an even ceil(0.1 side) made odd: -1 or +1
    coins: Literal["batch", "image"] = "batch"  # the jitter and blur coins: once per batch (reference) or per image


@dataclass
class RCSSpec:
    """Rare class sampling of source samples from the store's class counts."""
    temperature: PosFloat = 0.01
    min_pixels: NonNegInt = 3000  # a sample qualifies for class c with more pixels of c (native resolution)
    min_crop_ratio: NonNegFloat = 0.5  # re-crop until the crop holds > min_pixels * this of c (HRDA 1024 crops: 2.0)
    retries: NonNegInt = 10


@dataclass
class FDSpec:
    """ImageNet feature distance on thing-class cells of the source (context branch under HRDA)."""
    weight: NonNegFloat = 0.005
    classes: list[int] = field(default_factory=lambda: [6, 7, 11, 12, 13, 14, 15, 16, 17, 18])
    majority: Fraction = 0.75  # a feature cell takes a class covering at least this share of its pixels


@dataclass
class MICSpec:
    """Masked image consistency on the augmented target."""
    block: PosInt = 64  # mask block side in pixels
    mask_ratio: Fraction = 0.7  # fraction of blocks zeroed
    weight: NonNegFloat = 1.0


@dataclass
class RefineSpec:
    """Pseudo-label refinement with optical flow (`vdatrain/adapt/refine.py`); the reference's values.
    oracle_warped: the reference code's oracle (Tables 5-8); oracle: the paper's text."""
    strategy: Literal["consistency", "max_confidence", "warp_frame", "oracle_warped", "oracle"] = "consistency"
    pair: str = "bwd_1"  # target flow from t to the other frame: bwd_k (past) or fwd_k (future)
    # pixels without a valid warp: frame t's in the bottom and side strips (reference), everywhere, or nowhere
    invalid: Literal["reference_strips", "frame_t", "ignore"] = "reference_strips"
    weight: Literal["warped", "frame_t"] = "warped"  # a warped label's weight: t+k's warped (reference) or t's
    start_iter: NonNegInt = 1500  # the mixed (ClassMix) target loss is off before this iteration (MIC is not)


@dataclass
class VideoDiscSpec:
    """DA-VSN video discriminator (`vdatrain/adapt/video_discriminator.py`) on predictions of t and t+k."""
    pair: str = "bwd_1"  # the target's other frame (its offset must be in target.offsets)
    source_pair: Optional[str] = None  # the source's, when its frame distance differs
    weight: NonNegFloat = 1.0e-4  # adversarial weight of the network's loss: the reference code's (the paper's text: 0.1)
    softmax: Literal["joint", "per_frame"] = "joint"  # one softmax over both frames' 2C logits (reference) or each
    scale: OpenFraction = 0.5  # the frames' logits resized to this x the crop before the discriminator (reference 0.5)
    lr: PosFloat = 1.0e-4  # the discriminator's own Adam
    betas: tuple[Fraction, Fraction] = (0.9, 0.99)
    power: NonNegFloat = 0.9  # poly schedule lr (1 - it / iters) ** power


@dataclass
class AdaptSpec:
    """Self-training (DACS) with switchable parts; null disables an optional part."""
    ema_alpha: Fraction = 0.999
    pseudo_threshold: Fraction = 0.968
    mix: Literal["classmix", "none"] = "classmix"
    augment: Optional[AugmentSpec] = field(default_factory=AugmentSpec)
    rcs: Optional[RCSSpec] = None
    fd: Optional[FDSpec] = None
    mic: Optional[MICSpec] = None
    refine: Optional[RefineSpec] = None
    consistent_mix: bool = False  # with model.accel: one ClassMix mask for both frames, mixed flow
    video_disc: Optional[VideoDiscSpec] = None


@dataclass
class OptimSpec:
    lr: PosFloat = 6e-5
    head_lr_mult: PosFloat = 10.0
    weight_decay: NonNegFloat = 0.01
    betas: tuple[Fraction, Fraction] = (0.9, 0.999)
    # no weight decay for: names holding "norm" (reference: MiT's LayerNorms; BatchNorms keep it), or every norm
    norm_weight_decay: Literal["by_name", "zero"] = "by_name"
    warmup_iters: NonNegInt = 1500
    warmup_ratio: OpenFraction = 1e-6  # mmseg's: the warm-up starts at this fraction of each group's rate
    grad_clip: Optional[PosFloat] = None


@dataclass
class TrainSpec:
    iters: PosInt = 40000
    batch_size: PosInt = 2
    workers: NonNegInt = 4
    seed: int = 1
    precision: Literal["fp32", "bf16"] = "fp32"
    log_every: PosInt = 50
    eval_every: NonNegInt = 4000
    checkpoint_every: PosInt = 2000
    # history beside the rolling checkpoint.pt: iter_<N>.pt of the last this-many checkpoints (0: none)
    keep_checkpoints: NonNegInt = 0
    # check every chunk against its checksum record on first read (a flipped byte stops the run naming the
    # file); costs one extra read of each chunk per DataLoader worker
    verify_reads: bool = False
    # how long a collective may wait for the slowest process under torchrun (evaluation is sharded, so no
    # process waits a whole evaluation); NCCL's own default is 10 minutes
    dist_timeout_min: PosFloat = 30.0


@dataclass
class EvalSpec:
    store: str
    classes: Literal["all19", "viper", "synthia-seq"] = "all19"
    protocol: Literal["standard", "unifiedvideoda"] = "standard"
    window: tuple[PosInt, PosInt] = (1024, 1024)
    stride: tuple[PosInt, PosInt] = (512, 512)


@dataclass
class Recipe:
    name: str
    model: ModelSpec
    source: DataSpec
    eval: EvalSpec
    data_root: str = "."  # store paths are relative to it (e.g. --set data_root=/mnt/stores)
    description: str = ""
    label: str = ""  # the row of `vdatrain report` tables (default: the name)
    target: Optional[DataSpec] = None
    adapt: Optional[AdaptSpec] = None
    optim: OptimSpec = field(default_factory=OptimSpec)
    train: TrainSpec = field(default_factory=TrainSpec)


def _check(value, annotation, key: str):
    """Return `value` converted to `annotation` (tuples from lists, ints as floats), or raise naming `key`."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        value = _check(value, args[0], key)
        for bounds in args[1:]:
            bounds.check(value, key)
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _check(value, inner, key)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise RecipeError(f"{key}: expected a mapping, got {type(value).__name__}")
        return _build(annotation, value, key)
    if origin is Literal:
        if value not in args:
            raise RecipeError(f"{key}: {value!r} is not one of {list(args)}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise RecipeError(f"{key}: expected a list, got {value!r}")
        if origin is tuple and len(args) != len(value) and not (len(args) == 2 and args[1] is Ellipsis):
            raise RecipeError(f"{key}: expected {len(args)} values, got {len(value)}")
        inner = args if origin is tuple else args * len(value)
        items = [_check(v, t, f"{key}[{i}]") for i, (v, t) in enumerate(zip(value, inner))]
        return tuple(items) if origin is tuple else items
    if annotation is bool:
        if not isinstance(value, bool):
            raise RecipeError(f"{key}: expected true or false, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecipeError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if annotation in (int, str):
        if isinstance(value, bool) or not isinstance(value, annotation):
            raise RecipeError(f"{key}: expected {annotation.__name__}, got {value!r}")
        return value
    raise RecipeError(f"{key}: unsupported schema type {annotation}")


def _build(cls, data: dict, prefix: str):
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise RecipeError(f"{where}{unknown[0]}: unknown key (known here: {', '.join(fields)})")
    values = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name in data:
            values[name] = _check(data[name], hints[name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise RecipeError(f"{key}: required")
    return cls(**values)


def apply_override(data: dict, assignment: str) -> None:
    """'train.iters=100' -> data["train"]["iters"] = 100 (the value parsed as YAML)."""
    if "=" not in assignment:
        raise RecipeError(f"--set {assignment!r}: write key=value (e.g. train.iters=100)")
    key, raw = assignment.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise RecipeError(f"--set {key.strip()}: {raw!r} is not a YAML value ({str(e).splitlines()[0]})") from None
    *parents, leaf = key.strip().split(".")
    node = data
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise RecipeError(f"--set {key}: {p} is not a section")
    node[leaf] = value


SHIPPED = Path(__file__).parent / "recipes"


def shipped_recipes() -> dict[str, Path]:
    """Recipes that come with the package, by name (file stem)."""
    return {p.stem: p for p in sorted(SHIPPED.glob("*.yaml"))}


def find_recipe(name_or_path) -> Path:
    """A recipe file, or the shipped recipe of that name (`vdatrain recipes` lists them)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = shipped_recipes()
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    raise RecipeError(f"{path}: recipe not found (not a file, nor one of the shipped recipes: "
                      f"see `vdatrain recipes`)")


def _merge(base: dict, update: dict) -> dict:
    """`update` over `base`: mappings merge key by key, anything else (lists, null) replaces."""
    out = dict(base)
    for key, value in update.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def read_recipe_data(path, seen: tuple = ()) -> dict:
    """The YAML mapping of a recipe file with its `base` chain resolved."""
    path = find_recipe(path)
    if path.resolve() in seen:
        raise RecipeError(f"{path}: base: recipes include each other")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise RecipeError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of sections")
    if "base" in data:
        base = data.pop("base")
        if not isinstance(base, str):
            raise RecipeError(f"{path}: base: expected a recipe name or file, got {base!r}")
        try:
            data = _merge(read_recipe_data(path.parent / base if (path.parent / base).is_file() else base,
                                           (*seen, path.resolve())), data)
        except RecipeError as e:
            raise RecipeError(f"{path}: base: {e}") from None
    return data


def _video_checks(r: Recipe) -> None:
    """Every flow pair a video part names must reach the model in the batches; errors name the key."""
    from flowprep.errors import StoreError
    from flowprep.store import pair_offsets

    for part in ("source", "target"):
        data = getattr(r, part)
        if data is not None and (not data.offsets or data.offsets[0] != 0):
            raise RecipeError(f"{part}.offsets: the first offset must be 0 (frame t, the labelled one), "
                              f"got {data.offsets}")
    uses = []
    for key, spec in (("model.accel", r.model.accel), ("adapt.video_disc", r.adapt and r.adapt.video_disc)):
        if spec:
            uses += [(f"{key}.pair", spec.pair, ("target",)),
                     (f"{key}.source_pair" if spec.source_pair else f"{key}.pair", spec.source_pair or spec.pair,
                      ("source",))]
    if r.adapt and r.adapt.refine:
        uses += [("adapt.refine.pair", r.adapt.refine.pair, ("target",))]
    for key, pair, parts in uses:
        try:
            src, dst = pair_offsets(pair)
        except StoreError as e:
            raise RecipeError(f"{key}: {e}") from None
        if src != 0:
            raise RecipeError(f"{key}: {pair} starts at frame {src:+d}; a pair from frame t is needed (e.g. bwd_1)")
        for part in parts:
            data = getattr(r, part)
            if data is None:
                continue
            if pair not in data.flows or dst not in data.offsets:
                raise RecipeError(f"{key}: {pair} needs {part}.flows to list it and {part}.offsets to hold {dst} "
                                  f"(now flows {data.flows}, offsets {data.offsets})")
    if r.adapt and r.adapt.consistent_mix and (r.model.accel is None or r.adapt.mix != "classmix"):
        raise RecipeError("adapt.consistent_mix: needs model.accel and adapt.mix: classmix (it mixes the second frame)")


def load_recipe(path, overrides: list[str] = ()) -> Recipe:
    """Read (with its base), override, validate; store paths come back joined to `data_root`."""
    path = find_recipe(path)
    data = read_recipe_data(path)
    for assignment in overrides:
        apply_override(data, assignment)
    try:
        recipe = _build(Recipe, data, "")
    except RecipeError as e:
        raise RecipeError(f"{path}: {e}") from None
    for spec in (recipe.source, recipe.target, recipe.eval):
        if spec is not None:
            spec.store = str(Path(recipe.data_root) / spec.store)
    if recipe.adapt is not None and recipe.target is None:
        raise RecipeError(f"{path}: adapt: needs a target section (the unlabelled target data)")
    try:
        _model_checks(recipe)
        _video_checks(recipe)
    except RecipeError as e:
        raise RecipeError(f"{path}: {e}") from None
    return recipe


def _model_checks(r: Recipe) -> None:
    """The model exists, and HRDA's detail box fits inside every crop and evaluation window."""
    from vdatrain.models import MODELS

    if r.model.name not in MODELS:
        raise RecipeError(f"model.name: {r.model.name!r} is not a model (choose from {', '.join(MODELS)})")
    if r.model.hrda is None:
        return
    detail = r.model.hrda.detail_crop
    for key, size in (("source.crop", r.source.crop), ("target.crop", r.target and r.target.crop),
                      ("eval.window", r.eval.window)):
        if size and (detail[0] > size[0] or detail[1] > size[1]):
            raise RecipeError(f"model.hrda.detail_crop: {list(detail)} does not fit inside {key} {list(size)}")


STORE_DATASETS = ("viper", "synthia-seq", "cityscapes-seq", "bddvid")  # what flowprep writes
SPLITS = ("train", "val", "test")


def _check_store_name(key: str, reader) -> None:
    """A store named like flowprep's documented `{dataset}_{split}.zarr` must hold that dataset and split."""
    stem = reader.root.name.removesuffix(".zarr")
    for dataset in STORE_DATASETS:
        if stem == dataset or stem.startswith(dataset + "_"):
            split = stem[len(dataset) + 1:]
            held = (reader.attrs["dataset"], reader.attrs["split"])
            if held[0] != dataset or (split in SPLITS and held[1] != split):
                raise RecipeError(f"{key}: {reader.root} is named for {dataset}{' ' + split if split in SPLITS else ''}"
                                  f" but holds {held[0]} {held[1]} (a store copied under another name?)")
            return


def check_paths(recipe: Recipe, weights: bool = True) -> None:
    """Every store opens as a flowprep store and (with `weights`, for training) every weight file exists and the
    training crops fit their stores' frames; errors name the key."""
    from flowprep.errors import StoreError
    from flowprep.store import StoreReader

    stores = [("source.store", recipe.source.store), ("eval.store", recipe.eval.store)]
    if recipe.target:
        stores.append(("target.store", recipe.target.store))
    readers = {}
    for key, store in stores:
        try:
            readers[key.split(".")[0]] = StoreReader(store)
        except StoreError as e:
            raise RecipeError(f"{key}: {e}") from None
    for key, store in stores:  # a store of another dataset copied under the recipe's store name trains silently
        _check_store_name(key, readers[key.split(".")[0]])
    needs = {part: (getattr(recipe, part).offsets, getattr(recipe, part).flows) for part in ("source", "target")
             if getattr(recipe, part) is not None}
    if recipe.model.accel:  # dual-frame evaluation
        from flowprep.store import pair_offsets

        needs["eval"] = ([0, pair_offsets(recipe.model.accel.pair)[1]], [recipe.model.accel.pair])
    for part in ("source", "target") if weights else ():  # training crops come from the resized frames, never
        data = getattr(recipe, part)  # shrunk to fit
        if data is not None:
            h, w = readers[part].resolution
            rh, rw = round(h * data.scale), round(w * data.scale)
            if data.crop[0] > rh or data.crop[1] > rw:
                raise RecipeError(f"{part}.crop: {list(data.crop)} does not fit the {rh}x{rw} frames of "
                                  f"{readers[part].root} ({h}x{w} resized by {part}.scale {data.scale:g})")
    for part, (offsets, flows) in needs.items():
        reader = readers[part]
        missing = [o for o in offsets if o not in reader.frame_offsets]
        if missing:
            raise RecipeError(f"{part}.store: {reader.root} has no frames at offsets {missing} "
                              f"(it holds {list(reader.frame_offsets)})")
        missing = [f for f in flows if f not in reader.flow_pairs]
        if missing:
            raise RecipeError(f"{part}.store: {reader.root} has no flow {', '.join(missing)} "
                              f"(compute it: flowprep flow {reader.root} --pairs ...)")
    for key in ("pretrained", "init") if weights else ():
        path = getattr(recipe.model, key)
        if path and not Path(path).is_file():
            raise RecipeError(f"model.{key}: {path}: file not found")
