"""Evaluation: predict (`predict`), accumulate confusion matrices over a store (`accumulate`), write the
results and pictures (`write`). `run_evaluation` is the one entry point: `vdatrain eval` and the evaluations
during training both go through it.
"""

from __future__ import annotations

from pathlib import Path

from vdatrain.evaluation.accumulate import evaluate, temporal_pairs
from vdatrain.evaluation.write import results, results_markdown, write_results

__all__ = ["evaluate", "results", "results_markdown", "run_evaluation", "temporal_pairs", "write_results"]


def run_evaluation(recipe, model, out_dir, d, pictures: int = 0, temporal: bool = False, progress: bool = False,
                   run: dict | None = None) -> dict:
    """Evaluate `model` on the recipe's eval store with its windows: every process of `d` (a
    `vdatrain.distributed.Dist`) predicts its share of the images and gets the whole set's result; the main
    one writes results.json, per_class.csv/.md and confusion.npy to `out_dir`, each process the pictures of
    the first `pictures` images that fell to it (under pictures/). `temporal`: also the temporal metrics of every stored pair from frame t. Returns the result
    (`results`): mIoU per protocol (the recipe's protocol first), per-class IoU, temporal metrics, `run`, and
    the samples skipped."""
    e, out_dir = recipe.eval, Path(out_dir)
    meters, skipped = ({} if temporal else None), []
    conf = evaluate(model, e.store, e.window, e.stride, recipe.model.num_classes, d.device, progress=progress and d.main,
                    pictures=pictures, picture_dir=out_dir / "pictures", temporal=meters,
                    skipped=skipped, verify=recipe.train.verify_reads, dist=d,
                    refine=recipe.adapt.refine if recipe.adapt else None)
    result = results(conf, e.classes, meters, run, skipped)
    if d.main:
        write_results(result, conf, out_dir)
    result["miou"] = {e.protocol: result["miou"][e.protocol],
                      **{k: v for k, v in result["miou"].items() if k != e.protocol}}
    return result
