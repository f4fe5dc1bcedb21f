"""Checks across fields and against the data on disk, after the schema has built a recipe.

`model_checks` and `video_checks` run in `load_recipe` (nothing on disk): HRDA's detail box fits
every crop, every flow pair a video part names reaches the model. `check_paths` runs before
training or evaluation: every store opens, is the dataset its name says, holds the frames and
flows the recipe reads, and every weight file exists.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

from vdatrain.recipe.schema import Recipe, RecipeError


def video_checks(r: Recipe) -> None:
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
    vd = r.adapt and r.adapt.video_disc
    if vd and r.model.accel and vd.judge == "fused":  # frame t+k is predicted with its own partner
        from vdatrain.methods.self_training import pair_for, partner_pair

        for part in ("source", "target"):
            try:
                at = partner_pair(pair_for(r.model.accel, part), pair_offsets(pair_for(vd, part))[1])
            except StoreError as e:
                raise RecipeError(f"adapt.video_disc.judge: {e}") from None
            uses.append((f"adapt.video_disc.judge: fused (frame t+k of the {part} with its own partner)", at,
                         (part,)))
    for key, pair, parts in uses:
        try:
            src, dst = pair_offsets(pair)
        except StoreError as e:
            raise RecipeError(f"{key}: {e}") from None
        if src != 0 and not key.startswith("adapt.video_disc.judge"):
            raise RecipeError(f"{key}: {pair} starts at frame {src:+d}; a pair from frame t is needed (e.g. bwd_1)")
        for part in parts:
            data = getattr(r, part)
            if data is None:
                continue
            if pair not in data.flows or dst not in data.offsets:
                raise RecipeError(f"{key}: {pair} needs {part}.flows to list it and {part}.offsets to hold {dst} "
                                  f"(now flows {data.flows}, offsets {data.offsets})")
    if r.adapt and r.adapt.consistent_mix and (r.model.accel is None or r.adapt.mix == "none"):
        raise RecipeError("adapt.consistent_mix: needs model.accel and a mix (adapt.mix other than none: it mixes "
                          "the second frame with the same mask)")


@lru_cache(maxsize=32)
def _geometry(name: str, backbone: str | None) -> tuple[int, int]:
    """(output stride, size divisibility) of the single-frame model `name` (with the timm backbone given as its
    spec's fields in JSON), read from its declaration: built on the meta device, so no memory and no
    initialisation."""
    import torch

    from vdatrain.models import build_model
    from vdatrain.recipe.schema import BackboneSpec

    spec = BackboneSpec(**json.loads(backbone)) if backbone else None
    try:
        with torch.device("meta"):
            model = build_model(name, backbone=spec)
    except ValueError as e:
        raise RecipeError(str(e)) from None
    return model.output_stride, model.backbone.size_divisibility


def model_checks(r: Recipe) -> None:
    """HRDA's detail box fits inside every crop and evaluation window and lies on the model's output stride;
    every crop, window and detail box is a multiple of what the backbone declares it can take (the schema
    checked the model's name)."""
    m = r.model
    stride, divisible = _geometry(m.name, json.dumps(asdict(m.backbone)) if m.backbone else None)
    sizes = [("source.crop", r.source.crop), ("target.crop", r.target and r.target.crop),
             ("eval.window", r.eval.window)]
    if m.hrda is not None:
        detail = m.hrda.detail_crop
        for key, size in sizes:
            if size and (detail[0] > size[0] or detail[1] > size[1]):
                raise RecipeError(f"model.hrda.detail_crop: {list(detail)} does not fit inside {key} {list(size)}")
        # the detail logits are placed at box / stride: off the stride they would land beside their pixels
        if m.hrda.box_grid % stride:
            raise RecipeError(f"model.hrda.box_grid: {m.hrda.box_grid} is not a multiple of the model's output "
                              f"stride {stride}: the detail logits would be misplaced")
        if detail[0] % stride or detail[1] % stride:
            raise RecipeError(f"model.hrda.detail_crop: {list(detail)} is not a multiple of the model's output "
                              f"stride {stride}")
        scale = m.hrda.context_scale
        sizes += [("model.hrda.detail_crop", detail)] + [
            (f"{key} x model.hrda.context_scale", (round(size[0] * scale), round(size[1] * scale)))
            for key, size in sizes[:2] if size]
    if divisible > 1:
        for key, size in sizes:
            if size and (size[0] % divisible or size[1] % divisible):
                raise RecipeError(f"{key}: {list(size)} is not a multiple of {divisible}, which the backbone "
                                  f"{m.backbone.timm if m.backbone else m.name} needs")


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
            hint = " (the ImageNet weights each architecture needs, and where to get them: README, " \
                   "'Running the paper's experiments')" if key == "pretrained" else ""
            raise RecipeError(f"model.{key}: {path}: file not found{hint}")
