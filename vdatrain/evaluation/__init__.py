"""Evaluation of a recipe's model on its eval store: `evaluate` is the one entry point (`vdatrain eval`, the
evaluations during training and `vdatrain check` go through it).

`predict` (how a frame is predicted: sliding windows, dual-frame for two-frame models), `loop` (the
samples of the store through the model and the evaluators), `evaluators` (mIoU, temporal metrics,
pictures: one class each), `write` (results.json, per-class tables, the confusion matrix).
"""

from __future__ import annotations

from pathlib import Path

from flowprep.store import StoreReader
from vdatrain.evaluation.evaluators import Confusion, Pictures, Temporal, evaluated_classes
from vdatrain.evaluation.loop import score
from vdatrain.evaluation.predict import Predictor
from vdatrain.evaluation.write import results_markdown, write_results

__all__ = ["evaluate", "results_markdown"]


def evaluate(recipe, model, d, out_dir=None, pictures: int = 0, temporal: bool = False, progress: bool = False,
             run: dict | None = None, limit: int | None = None, extra: tuple = ()) -> dict:
    """Evaluate `model` on the recipe's eval store with its windows; every process of `d` (a
    `vdatrain.distributed.Dist`) predicts its share of the images and gets the whole set's result.

    `temporal`: also the temporal metrics of every stored pair from frame t; `pictures`: pictures of the first
    this-many images (under `out_dir`/pictures, each by the process that predicted it); `extra`: further
    evaluators (a method's own pictures); `limit`: the first this-many images only (`vdatrain check`).
    The main process writes results.json, per_class.csv/.md and confusion.npy to `out_dir` (when given).

    Returns: "miou" per protocol (the recipe's first), "per_class", "temporal" (per pair and protocol),
    "classes", "labelled_pixels", `run` as given, and "skipped" samples."""
    e = recipe.eval
    reader = StoreReader(e.store, verify=recipe.train.verify_reads)
    confusion = Confusion(recipe.model.num_classes, e.classes)
    evaluators = [confusion, *([Temporal(reader, recipe.model.num_classes, e.classes)] if temporal else [])]
    if pictures:
        title = f"{(run or {}).get('label') or recipe.name} ({recipe.model.name})"
        evaluators.append(Pictures(Path(out_dir) / "pictures", pictures, title, evaluated_classes(e.classes)[0]))
    predictor = Predictor(model, e.window, e.stride, d.device, recipe.train.precision == "bf16", e.window_batch)
    skipped = score(predictor, reader, [*evaluators, *extra], d, limit, progress and d.main)
    result = {}
    for ev in [*evaluators, *extra]:
        result |= ev.result()
    result["miou"] = {e.protocol: result["miou"][e.protocol], **{k: v for k, v in result["miou"].items()
                                                                 if k != e.protocol}}
    if run:
        result["run"] = run
    if skipped:
        result["skipped"] = skipped
    if d.main and out_dir is not None:
        write_results(result, confusion.conf.numpy(), out_dir)
    return result
