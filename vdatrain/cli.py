"""`vdatrain` command line. torch is imported inside commands so `--help` stays quick.

Exit status (flowprep.exits): 0 success; 1 the environment failed the command (permission, disk full) or a
check failed; 2 bad arguments, recipe or input. Either failure is one line naming the key or file.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys

import click

from vdatrain import __version__


class _Group(click.Group):
    """Recipe, store and weights errors: one line, exit 2; environment failures: one line, exit 1 (flowprep.exits)."""

    def invoke(self, ctx):
        from flowprep.errors import FlowprepError
        from flowprep.exits import invoke_guarded
        from vdatrain.models.weights import WeightsError
        from vdatrain.recipe import RecipeError

        return invoke_guarded(self, ctx, (RecipeError, FlowprepError, WeightsError))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vdatrain")
def cli():
    """Train and evaluate domain-adaptive video semantic segmentation on flowprep stores."""


def _git_revision() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=__file__.rsplit("/", 2)[0]).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


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
def recipes(show, overrides, pieces):
    """List the shipped recipes (use a name wherever a RECIPE file is expected)."""
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
    for name in shipped_recipes():
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
    from vdatrain.evaluation import results_markdown, run_evaluation
    from vdatrain.models import build_model
    from vdatrain.checkpoint import load_checkpoint_weights
    from vdatrain.recipe import check_paths, load_recipe

    r = load_recipe(recipe, list(overrides))
    check_paths(r, weights=False)  # the checkpoint holds the weights
    model = build_model(r.model.name, r.model.num_classes, r.model.hrda, r.model.accel)
    fmt = load_checkpoint_weights(model, ckpt, branch)
    click.echo(f"{ckpt}: {fmt} weights", err=True)
    out = Path(out or Path(ckpt).parent / "eval")
    datasets = [StoreReader(s).attrs["dataset"] for s in (r.source.store, r.eval.store)]
    run = {"recipe": r.name, "label": r.label or r.name, "shift": " -> ".join(datasets),
           "protocol": r.eval.protocol, "checkpoint": ckpt, "branch": branch}
    d = distributed.setup(r.train.dist_timeout_min)  # under torchrun: each process evaluates its share
    try:
        result = run_evaluation(r, model, out, d, pictures=pictures, temporal=temporal, progress=True, run=run)
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
@click.option("--memory-modes", is_flag=True,
              help="Check each recipe four times: fp32, fp32 + model.checkpointing, bf16, bf16 + checkpointing.")
@click.option("--val-images", type=click.IntRange(min=1), default=None,
              help="Val images for the full-schedule estimate (default: the eval store's; 500 for Cityscapes val).")
@click.option("--run-dir", default=None, type=click.Path(file_okay=False, path_type=str),
              help="Keep the run folder of a single check here (default: a scratch folder, removed).")
@click.option("--json", "json_out", default=None, type=click.Path(dir_okay=False, path_type=str),
              help="Also write the reports as JSON (a list, one object per check).")
@click.option("--table", "table_out", default=None, type=click.Path(dir_okay=False, path_type=str),
              help="Also write the Markdown table to this file.")
def check(recipes, iters, overrides, narrow, families, memory_modes, val_images, run_dir, json_out, table_out):
    """Run each RECIPE (file, shipped name, or glob over shipped names such as 'dlv2-hrda-*-viper-cs') for a few
    iterations at its real geometry, through the real `fit` code path with every part active from the first
    iteration, evaluate one full-size val image with its sliding windows (dual-frame for ACCEL), and print
    shapes, s/it, peak memory, parameters and the estimated time of the full schedule.

    Several checks run one per fresh process (each its own peak memory). Exit status: 0 when every step of
    every check ran, 1 when a check failed in training or evaluation, 2 for a bad recipe, store or option.
    Under torchrun (--nproc-per-node N) a single check trains on N processes.
    """
    import time
    from pathlib import Path

    from vdatrain import check as chk
    from vdatrain.recipe import RecipeError, load_recipe

    names = chk.select(list(recipes), families)
    if not names:
        raise click.UsageError("name at least one RECIPE (or --families)")
    modes = chk.MEMORY_MODES if memory_modes else {"": []}
    jobs = [(n, label, list(overrides) + extra) for n in names for label, extra in modes.items()]
    if len(jobs) == 1:
        name, _, sets = jobs[0]
        result = chk.run_check(load_recipe(name, sets), iters, narrow, val_images, run_dir, progress=sys.stderr.isatty())
        if result is None:  # not the main process under torchrun
            return
        reports = [result]
    else:
        if run_dir:
            raise click.BadParameter("keeps the run folder of a single check only", param_hint="--run-dir")
        reports = []
        for k, (name, label, sets) in enumerate(jobs, 1):
            load_recipe(name, sets)  # a bad recipe or --set is exit 2 before any check runs
            click.echo(f"{time.strftime('%Y-%m-%d %H:%M:%S')} check {k}/{len(jobs)}: {name} {label}".rstrip(), err=True)
            reports.append(_check_in_subprocess(name, sets, iters, narrow, val_images))
    for rep in reports:
        click.echo(chk.details(rep), nl=False)
    text = chk.table(reports)
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


def _check_in_subprocess(name: str, sets: list[str], iters: int, narrow: bool, val_images) -> dict:
    """One `vdatrain check` in a fresh process; its report, or a failed one with the process's last line."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="vdatrain-check-") as tmp:
        out = os.path.join(tmp, "report.json")
        cmd = [sys.executable, "-m", "vdatrain", "check", name, "--iters", str(iters), "--json", out,
               *(a for s in sets for a in ("--set", s)), *(["--narrow"] if narrow else []),
               *(["--val-images", str(val_images)] if val_images else [])]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if os.path.exists(out):
            return json.loads(open(out).read())[0]
    tail = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode} (killed: out of memory?)"])[-1]
    return {"recipe": name, "ok": False, "step": "process", "error": tail}


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
@click.option("--launcher", type=click.Choice(["local", "slurm", "submitit-local"]), default="local",
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
    runs = sw.plan(list(recipes), seeds, list(overrides), out, gpus_per_run)
    sw.save(out, runs, launcher)

    def say(line):
        click.echo(f"[{__import__('time').strftime('%H:%M:%S')}] {line}", err=True)

    say(f"sweep {out}: {len(runs)} runs ({launcher})")
    if launcher == "local":
        results = sw.run_local(runs, gpus_per_run, say)
        failed = [n for n, rc in results.items() if rc]
    else:
        options = sw.SlurmOptions(partition, time_min, account, qos, cpus_per_run, mem_gb, slurm_extra)
        sw.submit(runs, out, options, gpus_per_run, "slurm" if launcher == "slurm" else "local", say)
        failed = [r.name for r in runs if r.state()["state"] == "failed"]
    if failed:
        say(f"{len(failed)} runs failed: {', '.join(failed)} (vdatrain sweep --status --out {out})")
        sys.exit(1)


@cli.command("report")
@click.argument("folders", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=str))
@click.option("--out", default=None, type=click.Path(file_okay=False, path_type=str),
              help="Also write table.md, table.csv and miou.png (grouped bar chart) to this folder.")
def report_cmd(folders, out):
    """Gather finished evaluations into the paper's table layout: methods (the recipes' `label`) as rows,
    domain shifts as columns, then PL-PredConsis-mIoU per frame distance.

    FOLDERS are evaluation folders written by `vdatrain eval --out`, run folders holding eval/, or sweep
    folders (`vdatrain sweep --out`: their finished runs). Runs of one label on one shift (seeds) are shown
    as mean ± std (n).
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


def main():
    cli(prog_name="vdatrain")
