"""`vdatrain check`: paper recipes at their real geometry before GPUs are booked (`vdatrain.check`)."""

from __future__ import annotations

import json
import os
import sys

import click

from vdatrain.cli.group import cli


@cli.command()
@click.argument("recipes", nargs=-1)
@click.option("--iters", default=2, show_default=True, type=click.IntRange(min=1),
              help="Training iterations per check (from the second on, s/it is measured).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe value (every check).")
@click.option("--narrow", is_flag=True,
              help="Swap the model for the narrow network of its family (deeplabv2_check, daformer_check) and drop "
                   "pretrained/init weights: checks a heavy recipe's geometry and code paths on a CPU.")
@click.option("--families", is_flag=True,
              help="Add one shipped paper recipe of every distinct combination of parts per architecture, spread "
                   "over the four shifts (what `make paper-check` runs).")
@click.option("--cover", is_flag=True,
              help="Add the fewest shipped paper recipes that check every part and every shift geometry of each "
                   "architecture at least once (what CI runs).")
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(min=1),
              help="Checks run at a time, each in its own process.")
@click.option("--threads", default=None, type=click.IntRange(min=1),
              help="CPU threads of each check process (default: the cores divided by --jobs).")
@click.option("--memory-modes", is_flag=True,
              help="Check each recipe four times: fp32, fp32 + model.checkpointing, bf16, bf16 + checkpointing.")
@click.option("--modes", default=None, metavar="NAME,...",
              help="Check each recipe once per named setting, side by side: default, fp32, fp32+ckpt, bf16, bf16+ckpt, "
                   "tf32-off, cudnn-search-off, channels-last, bf16+channels-last, teacher-per-window.")
@click.option("--val-images", type=click.IntRange(min=1), default=None,
              help="Val images for the full-schedule estimate (default: the eval store's; 500 for Cityscapes val).")
@click.option("--run-dir", default=None, type=click.Path(file_okay=False, path_type=str),
              help="Keep the run folder of a single check here (default: a scratch folder, removed).")
@click.option("--json", "json_out", default=None, type=click.Path(dir_okay=False, path_type=str),
              help="Also write the reports as JSON (a list, one object per check).")
@click.option("--table", "table_out", default=None, type=click.Path(dir_okay=False, path_type=str),
              help="Also write the Markdown table to this file.")
def check(recipes, iters, overrides, narrow, families, cover, jobs, threads, memory_modes, modes, val_images, run_dir,
          json_out, table_out):
    """Run each RECIPE (file, shipped name, or glob over shipped names such as 'dlv2-hrda-*-viper-cs') for a few
    iterations at its real geometry, through the real `fit` code path with every part active from the first
    iteration, evaluate one full-size val image with its sliding windows (dual-frame for ACCEL), and print
    shapes, s/it, peak memory, parameters and the estimated time of the full schedule.

    Several checks run one per fresh process (each its own peak memory), --jobs at a time. Exit status: 0
    when every step of every check ran, 1 when a check failed in training or evaluation, 2 for a bad recipe,
    store or option. Under torchrun (--nproc-per-node N) a single check trains on N processes.
    """
    from pathlib import Path

    from vdatrain import check as chk
    from vdatrain import check_table
    from vdatrain.recipe import RecipeError, load_recipe
    from vdatrain.recipe.families import select

    names = select(list(recipes), families, cover)
    if not names:
        raise click.UsageError("name at least one RECIPE (or --families, --cover)")
    chosen = chk.MEMORY_MODES if memory_modes else [m.strip() for m in modes.split(",") if m.strip()] if modes else []
    unknown = [m for m in chosen if m not in chk.MODES]
    if unknown:
        raise click.BadParameter(f"{unknown[0]!r}: choose from {', '.join(chk.MODES)}", param_hint="--modes")
    jobs_list = [(n, label, list(overrides) + chk.MODES[label]) for n in names for label in chosen] or \
        [(n, "", list(overrides)) for n in names]
    if len(jobs_list) == 1:
        name, _, sets = jobs_list[0]
        result = chk.run_check(load_recipe(name, sets), iters, narrow, val_images, run_dir, progress=sys.stderr.isatty())
        if result is None:  # not the main process under torchrun
            return
        reports = [result]
    else:
        if run_dir:
            raise click.BadParameter("keeps the run folder of a single check only", param_hint="--run-dir")
        for name, _, sets in jobs_list:
            load_recipe(name, sets)  # a bad recipe or --set is exit 2 before any check runs
        threads = threads or max(1, (os.cpu_count() or 1) // jobs)
        reports = chk.run_checks(jobs_list, iters, narrow, val_images, jobs, threads,
                                 lambda line: click.echo(f"{__import__('time').strftime('%Y-%m-%d %H:%M:%S')} {line}",
                                                         err=True))
    for rep in reports:
        click.echo(check_table.details(rep), nl=False)
    text = check_table.table(reports)
    click.echo(text, nl=False)
    if table_out:
        Path(table_out).write_text(text)
    if json_out:
        Path(json_out).write_text(json.dumps(reports, indent=2))
    failed = [rep for rep in reports if not rep["ok"]]
    if failed:
        click.echo(f"{len(failed)} of {len(reports)} checks failed: {', '.join(r['recipe'] for r in failed)}", err=True)
        if len(reports) == 1 and failed[0]["step"] == "validate":
            raise RecipeError(failed[0]["error"])
        sys.exit(1)
