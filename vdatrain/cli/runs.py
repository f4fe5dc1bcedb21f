"""`vdatrain sweep` (runs of recipes x seeds, here or on SLURM) and `vdatrain report` (their results in the
paper's table layout)."""

from __future__ import annotations

import sys

import click

from vdatrain.cli.group import cli
from vdatrain.sweep import LAUNCHERS


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _seeds(ctx, param, value):
    if value is None:
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integers like 1,2,3") from None


def _slurm_extra(ctx, param, values):
    extra = {}
    for v in values:
        key, sep, value = v.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{v!r}: write KEY=VALUE (an sbatch option without its dashes)")
        extra[key] = value
    return extra


@cli.command()
@click.argument("recipes", nargs=-1)
@click.option("--out", required=False, type=click.Path(file_okay=False, path_type=str),
              help="The sweep folder: one run folder per recipe and seed (<out>/<recipe>/seed<N>), sweep.json.")
@click.option("--seeds", callback=_seeds, default=None, help="Seeds, e.g. 1,2,3 (default: each recipe's own).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe value (every run).")
@click.option("--launcher", type=click.Choice(LAUNCHERS), default="local",
              show_default=True, help="local: over the visible GPUs, one run per --gpus-per-run GPUs (CPU: one "
                                      "after the other); slurm: one job per run (submitit), requeued on preemption; "
                                      "submitit-local: the slurm jobs run on this machine, waited for.")
@click.option("--gpus-per-run", type=click.IntRange(min=1), default=1, show_default=True,
              help="GPUs of one run (more than one: torchrun inside the run; the recipe's batch is global).")
@click.option("--status", "show_status", is_flag=True,
              help="Show what is done, running, interrupted or failed (with the log tail) in --out; launch nothing.")
@click.option("--partition", default=None, help="slurm: partition.")
@click.option("--time-min", type=click.IntRange(min=1), default=24 * 60, show_default=True,
              help="slurm: time limit per job, minutes (a job that reaches it is requeued and resumes).")
@click.option("--account", default=None, help="slurm: account.")
@click.option("--qos", default=None, help="slurm: quality of service.")
@click.option("--cpus-per-run", type=click.IntRange(min=1), default=8, show_default=True,
              help="slurm: CPUs per job (DataLoader workers).")
@click.option("--mem-gb", type=click.IntRange(min=1), default=None, help="slurm: memory per job, GB.")
@click.option("--slurm-extra", "slurm_extra", multiple=True, callback=_slurm_extra, metavar="KEY=VALUE",
              help="slurm: any further sbatch option, e.g. --slurm-extra constraint=a100.")
def sweep(recipes, out, seeds, overrides, launcher, gpus_per_run, show_status, partition, time_min, account, qos,
          cpus_per_run, mem_gb, slurm_extra):
    """Run RECIPES x SEEDS, one resumable run each (`vdatrain fit` then `vdatrain eval`) under --out.

    RECIPES are files, shipped names, or globs over shipped names (quote them: 'dlv2-hrda-*-viper-cs'
    selects a row set of a paper table). Every recipe is validated first; nothing starts if one is bad.
    Starting the same sweep again skips finished runs and resumes the others from their checkpoints.
    Then: `vdatrain report OUT` (seeds as mean +- std). Exit 0 when every run launched here finished
    (or was submitted, on slurm), 1 when one failed.
    """
    from vdatrain import sweep as sw

    if not out:
        raise click.UsageError("--out is required (the sweep folder)")
    if show_status:
        rows = sw.status(out)
        click.echo(sw.format_status(rows))
        sys.exit(1 if any(r["state"] == "failed" for r in rows) else 0)
    if not recipes:
        raise click.UsageError("give at least one recipe (a file, a shipped name or a glob)")
    import signal

    from vdatrain.lock import FolderLock

    runs = sw.plan(list(recipes), seeds, list(overrides), out, gpus_per_run)

    def say(line):
        click.echo(f"[{__import__('time').strftime('%H:%M:%S')}] {line}", err=True)

    previous = signal.signal(signal.SIGTERM, _interrupt)  # kill -TERM stops the children as Ctrl-C does
    try:
        with FolderLock(out, "sweep folder"):
            sw.save(out, runs, launcher)
            say(f"sweep {out}: {len(runs)} runs ({launcher})")
            if launcher == "local":
                from vdatrain.local import run_local

                try:
                    results = run_local(runs, gpus_per_run, say)
                except KeyboardInterrupt:
                    say(f"sweep {out}: stopped; its runs are marked interrupted (the same command resumes them)")
                    sys.exit(130)
                failed = [n for n, rc in results.items() if rc]
            else:
                from vdatrain.slurm import SlurmOptions, submit

                options = SlurmOptions(partition, time_min, account, qos, cpus_per_run, mem_gb, slurm_extra)
                submit(runs, out, options, gpus_per_run, "slurm" if launcher == "slurm" else "local", say)
                failed = [r.name for r in runs if r.state()["state"] == "failed"]
    finally:
        signal.signal(signal.SIGTERM, previous)
    if failed:
        say(f"{len(failed)} runs failed: {', '.join(failed)} (vdatrain sweep --status --out {out})")
        sys.exit(1)


@cli.command("report")
@click.argument("folders", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=str))
@click.option("--out", default=None, type=click.Path(file_okay=False, path_type=str),
              help="Also write to this folder: table.md, table.csv, miou.png (mIoU per method and shift, from zero, "
                   "seed spread as error bars), per_class.png (IoU per class) and curves.png (training curves).")
def report_cmd(folders, out):
    """Gather finished evaluations into the paper's table layout: methods (the recipes' `label`) as rows,
    domain shifts as columns, then PL-PredConsis-mIoU per frame distance.

    FOLDERS are evaluation folders written by `vdatrain eval --out`, run folders holding eval/, or sweep
    folders (`vdatrain sweep --out`: their finished runs). Runs whose recipes differ in the seed alone are
    shown as mean ± std (n, seeds); runs that differ in anything else get rows of their own, named by the
    difference; the same evaluation given twice counts once.
    """
    from pathlib import Path

    from vdatrain import report as rep
    from vdatrain import sweep as sw

    expanded = []
    for f in folders:
        if (Path(f) / sw.SWEEP_FILE).is_file():
            runs = sw.run_dirs(f)
            done = [d for d in runs if (d / "eval/results.json").is_file()]
            if len(done) < len(runs):
                click.echo(f"warning: {f}: {len(runs) - len(done)} of {len(runs)} runs have no evaluation yet "
                           f"(vdatrain sweep --status --out {f})", err=True)
            expanded += done
        else:
            expanded.append(f)
    try:
        rows = [rep.load(f) for f in expanded]
    except rep.ReportError as e:
        raise click.BadParameter(str(e), param_hint="FOLDERS") from None
    click.echo(rep.markdown(rows), nl=False)
    if out:
        for path in rep.write(rows, out):
            click.echo(f"wrote {path}", err=True)
