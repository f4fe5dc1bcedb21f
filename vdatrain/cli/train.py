"""`vdatrain fit`, `vdatrain eval` and `vdatrain recipes`. torch is imported inside commands so `--help` stays
quick."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys

import click

from vdatrain import __version__
from vdatrain.cli.group import _git_revision, cli


@cli.command()
@click.argument("recipe")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe value, e.g. --set train.iters=100 (validated like the file).")
@click.option("--run-dir", default=None, type=click.Path(file_okay=False, path_type=str),
              help="Where checkpoints and logs go (default: runs/<recipe name>). An existing run resumes.")
@click.option("--allow-schedule-change", is_flag=True,
              help="Resume although train.iters or an optim value differs from the run's: continue from the "
                   "checkpoint's iteration on the new schedule (without it, such a resume is an error).")
def fit(recipe, overrides, run_dir, allow_schedule_change):
    """Train the model of RECIPE (a YAML file or a shipped recipe's name); a killed run resumes exactly
    from its last checkpoint.

    Several processes: torchrun --nproc-per-node N -m vdatrain fit RECIPE (one per GPU; on CPU, gloo).
    train.batch_size is the global batch, split evenly over the processes, so one recipe
    describes the same optimisation at any process count.
    """
    from pathlib import Path

    import torch

    from vdatrain.recipe import check_paths, load_recipe
    from vdatrain.train import fit as run_fit

    r = load_recipe(recipe, list(overrides))
    check_paths(r)
    run_dir = Path(run_dir or f"runs/{r.name}")
    info = {"command": shlex.join(sys.argv), "vdatrain": __version__, "torch": torch.__version__,
            "python": platform.python_version(), "git": _git_revision()}
    records = run_fit(r, run_dir, progress=True, run_info=info,
                      allow_schedule_change=allow_schedule_change)
    if int(os.environ.get("RANK", "0")) == 0:
        last = records[-1] if records else None
        click.echo(f"{run_dir}: " + (f"iteration {last['iteration']}, loss {last['loss']:.4f}" if last
                                     else "already complete"))


@cli.command()
@click.option("--show", default=None, metavar="NAME",
              help="Print one recipe (shipped name or file) merged with its base: parents, as `fit` reads it.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="With --show: apply these overrides too (validated like `fit` would).")
@click.option("--pieces", is_flag=True, help="List the shipped pieces recipes compose (base: shift/..., arch/...).")
@click.argument("patterns", nargs=-1)
def recipes(show, overrides, pieces, patterns):
    """List the shipped recipes (use a name wherever a RECIPE file is expected); PATTERNS filter them by name,
    e.g. `vdatrain recipes 'dlv2-hrda-*-viper-cs'` (globs, as `vdatrain sweep` reads them)."""
    from fnmatch import fnmatchcase

    import yaml

    from vdatrain.recipe import load_recipe, merged_recipe_data, shipped_pieces, shipped_recipes

    if show:
        load_recipe(show, list(overrides))  # validated: a bad recipe is one line, exit 2
        data = merged_recipe_data(show, list(overrides))
        order = ["name", "label", "description", "data_root", "source", "target", "model", "adapt", "optim", "train",
                 "eval"]
        data = {k: data[k] for k in sorted(data, key=lambda k: order.index(k) if k in order else len(order))}
        click.echo(yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=118), nl=False)
        return
    if pieces:
        for name, path in shipped_pieces().items():
            first = path.read_text().splitlines()[0].lstrip("# ")
            click.echo(f"{name:<24} {first}")
        return
    names = [n for n in shipped_recipes() if not patterns or any(fnmatchcase(n, p) for p in patterns)]
    if not names:
        raise click.BadParameter(f"no shipped recipe matches {' '.join(patterns)}", param_hint="PATTERNS")
    for name in names:
        click.echo(f"{name:<28} {merged_recipe_data(name).get('description', '')}")


@cli.command("eval")
@click.argument("recipe")
@click.option("--ckpt", required=True, type=click.Path(dir_okay=False, exists=True, path_type=str),
              help="A checkpoint written by `vdatrain fit` (its run folder's checkpoint.pt), or a released "
                   "mmseg-format DAFormer/HRDA/MIC checkpoint (keys mapped, see docs/train.md).")
@click.option("--branch", type=click.Choice(["student", "teacher"]), default="student", show_default=True,
              help="Which weights of a self-training checkpoint: the student (what the papers report) or "
                   "the EMA teacher.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe value.")
@click.option("--out", default=None, type=click.Path(file_okay=False, path_type=str),
              help="Folder for per_class.csv, per_class.md, results.json, confusion.npy and pictures/ "
                   "(default: eval/ next to --ckpt).")
@click.option("--pictures", default=4, show_default=True, type=click.IntRange(min=0),
              help="Save image | prediction overlay | ground truth pictures for this many samples.")
@click.option("--temporal/--no-temporal", default=True, show_default=True,
              help="Temporal metrics (PL-PredConsis, PL-Warped, PL-Consistency) for every stored flow pair from "
                   "frame t to another stored frame (one more prediction per pair and image).")
def evaluate_cmd(recipe, ckpt, branch, overrides, out, pictures, temporal):
    """Evaluate a checkpoint on the recipe's eval store: sliding windows, mIoU under both protocols.

    Under torchrun (--nproc-per-node N -m vdatrain eval ...) each process predicts every N-th image and the
    counts are summed: the same results as one process, N times sooner.

    The standard protocol excludes pixels labelled with a non-evaluated class; the
    reference's ("unifiedvideoda", the paper's numbers) also excludes pixels predicted
    as one. The recipe's eval.protocol is the one printed first.
    """
    from pathlib import Path

    from flowprep.store import StoreReader
    from vdatrain import distributed
    from vdatrain.adapt.refine import RefinementPictures
    from vdatrain.checkpoint import load_checkpoint_weights
    from vdatrain.evaluation import evaluate, results_markdown
    from vdatrain.models import build_model
    from vdatrain.recipe import check_paths, load_recipe

    r = load_recipe(recipe, list(overrides))
    check_paths(r, weights=False)  # the checkpoint holds the weights
    model = build_model(r.model.name, r.model.num_classes, r.model.hrda, r.model.accel, backbone=r.model.backbone)
    fmt = load_checkpoint_weights(model, ckpt, branch)
    click.echo(f"{ckpt}: {fmt} weights", err=True)
    out = Path(out or Path(ckpt).parent / "eval")
    datasets = [StoreReader(s).attrs["dataset"] for s in (r.source.store, r.eval.store)]
    from dataclasses import asdict

    from vdatrain.report import run_config

    trained = Path(ckpt).parent / "recipe.json"  # what the checkpoint was trained with, when it is a run's
    config = json.loads(trained.read_text()) if trained.is_file() else asdict(r)
    run = {"recipe": r.name, "label": r.label or r.name, "shift": " -> ".join(datasets),
           "protocol": r.eval.protocol, "checkpoint": str(Path(ckpt).resolve()), "branch": branch,
           "seed": config.get("train", {}).get("seed"), "config": run_config(config)}
    refine = r.adapt.refine if r.adapt else None
    extra = (RefinementPictures(out / "pictures", pictures, refine),) if refine and pictures else ()
    d = distributed.setup(r.train.dist_timeout_min)  # under torchrun: each process evaluates its share
    try:
        result = evaluate(r, model, d, out, pictures=pictures, temporal=temporal, progress=True, run=run,
                          extra=extra)
    finally:
        distributed.teardown()
    if not d.main:
        return
    skipped = result.get("skipped", [])
    if skipped:
        click.echo(f"warning: {len(skipped)} samples or temporal pairs skipped (incomplete in {r.eval.store}, or "
                   f"their partner frame or flow is missing): {', '.join(skipped[:5])}"
                   f"{' ...' if len(skipped) > 5 else ''}; "
                   f"listed in {out / 'results.json'}", err=True)
    click.echo(results_markdown(result))
