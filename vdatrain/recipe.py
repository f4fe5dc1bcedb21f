"""Recipes: YAML validated against a typed schema before anything runs.

A recipe is data. `load_recipe` reads YAML, applies `--set key=value` overrides
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
from typing import Literal, Optional

import yaml


class RecipeError(ValueError):
    """A recipe problem; the message names the file and the dotted key."""


@dataclass
class DataSpec:
    store: str  # a flowprep store
    crop: tuple[int, int] = (512, 512)  # (h, w) after resizing
    scale: float = 1.0  # resize before cropping (VIPER 4/3, Synthia 2)
    offsets: list[int] = field(default_factory=lambda: [0])
    flows: list[str] = field(default_factory=list)
    max_class_ratio: Optional[float] = None  # source crops: 0.75 in the paper
    margins: bool = False  # pseudo-label margin mask (Cityscapes targets)


@dataclass
class HRDASpec:
    """Multi-resolution fusion (`vdatrain/models/hrda.py`); BDD targets: detail_crop 360, detail_stride 180."""
    context_scale: float = 0.5
    detail_crop: tuple[int, int] = (512, 512)  # training detail box; inference detail windows
    detail_stride: tuple[int, int] = (256, 256)  # inference detail windows
    detail_loss_weight: float = 0.1  # L = (1 - w) CE(fused) + w CE(detail)
    box_grid: int = 8  # detail box corners on this pixel lattice


@dataclass
class ModelSpec:
    name: str = "deeplabv2_r101"
    num_classes: int = 19
    pretrained: Optional[str] = None  # ImageNet backbone weights (local file)
    init: Optional[str] = None  # whole-model weights to start from: a vdatrain or mmseg checkpoint
    hrda: Optional[HRDASpec] = None


@dataclass
class AugmentSpec:
    """DACS strong augmentation of mixed images (per image)."""
    jitter_p: float = 0.8  # colour jitter applied with this probability
    brightness: float = 0.2  # additive, on 0..1 intensities
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.15, 1.15)


@dataclass
class RCSSpec:
    """Rare class sampling of source samples from the store's class counts."""
    temperature: float = 0.01
    min_pixels: int = 3000  # a sample qualifies for class c with more pixels of c (native resolution)
    min_crop_ratio: float = 0.5  # re-crop until the crop holds > min_pixels * this of c (HRDA 1024 crops: 2.0)
    retries: int = 10


@dataclass
class FDSpec:
    """ImageNet feature distance on thing-class cells of the source (context branch under HRDA)."""
    weight: float = 0.005
    classes: list[int] = field(default_factory=lambda: [6, 7, 11, 12, 13, 14, 15, 16, 17, 18])
    majority: float = 0.75  # a feature cell takes a class covering at least this share of its pixels


@dataclass
class MICSpec:
    """Masked image consistency on the augmented target."""
    block: int = 64  # mask block side in pixels
    mask_ratio: float = 0.7  # fraction of blocks zeroed
    weight: float = 1.0


@dataclass
class AdaptSpec:
    """Self-training (DACS) with switchable parts; null disables an optional part."""
    ema_alpha: float = 0.999
    pseudo_threshold: float = 0.968
    mix: Literal["classmix", "none"] = "classmix"
    augment: Optional[AugmentSpec] = field(default_factory=AugmentSpec)
    rcs: Optional[RCSSpec] = None
    fd: Optional[FDSpec] = None
    mic: Optional[MICSpec] = None


@dataclass
class OptimSpec:
    lr: float = 6e-5
    head_lr_mult: float = 10.0
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_iters: int = 1500
    warmup_ratio: float = 1e-6  # mmseg's: the warm-up starts at this fraction of each group's rate
    grad_clip: Optional[float] = None


@dataclass
class TrainSpec:
    iters: int = 40000
    batch_size: int = 2
    workers: int = 4
    seed: int = 1
    precision: Literal["fp32", "bf16"] = "fp32"
    log_every: int = 50
    eval_every: int = 4000
    checkpoint_every: int = 2000


@dataclass
class EvalSpec:
    store: str
    classes: Literal["all19", "viper", "synthia-seq"] = "all19"
    protocol: Literal["standard", "unifiedvideoda"] = "standard"
    window: tuple[int, int] = (1024, 1024)
    stride: tuple[int, int] = (512, 512)


@dataclass
class Recipe:
    name: str
    model: ModelSpec
    source: DataSpec
    eval: EvalSpec
    data_root: str = "."  # store paths are relative to it (e.g. --set data_root=/mnt/stores)
    description: str = ""
    target: Optional[DataSpec] = None
    adapt: Optional[AdaptSpec] = None
    optim: OptimSpec = field(default_factory=OptimSpec)
    train: TrainSpec = field(default_factory=TrainSpec)


def _check(value, annotation, key: str):
    """Return `value` converted to `annotation` (tuples from lists, ints as floats), or raise naming `key`."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
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
    hints = typing.get_type_hints(cls)
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
    *parents, leaf = key.strip().split(".")
    node = data
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise RecipeError(f"--set {key}: {p} is not a section")
    node[leaf] = yaml.safe_load(raw)


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


def load_recipe(path, overrides: list[str] = ()) -> Recipe:
    """Read, override, validate; store paths come back joined to `data_root`."""
    path = find_recipe(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise RecipeError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of sections")
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
    return recipe


def check_paths(recipe: Recipe, weights: bool = True) -> None:
    """Every store opens as a flowprep store and (with `weights`, for training) every weight file
    exists; errors name the key."""
    from flowprep.errors import StoreError
    from flowprep.store import StoreReader

    stores = [("source.store", recipe.source.store), ("eval.store", recipe.eval.store)]
    if recipe.target:
        stores.append(("target.store", recipe.target.store))
    for key, store in stores:
        try:
            StoreReader(store)
        except StoreError as e:
            raise RecipeError(f"{key}: {e}") from None
    for key in ("pretrained", "init") if weights else ():
        path = getattr(recipe.model, key)
        if path and not Path(path).is_file():
            raise RecipeError(f"model.{key}: {path}: file not found")
