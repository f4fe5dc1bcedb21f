"""`flowprep` command line. Heavy imports (zarr, torch, ptlflow) happen inside commands.

Exit status: 0 success; 1 the command ran and found a problem (e.g. `verify`
found corrupt chunks); 2 bad arguments or bad input (the message names it).
"""

from __future__ import annotations

import json
import sys

import click

from flowprep import __version__
from flowprep.errors import FlowprepError


class _Group(click.Group):
    """Turns FlowprepError into a one-line message and exit status 2 instead of a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except FlowprepError as e:
            click.echo(f"error: {e}", err=True)
            ctx.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="flowprep")
def cli():
    """Build Video-DAS datasets: raw layouts -> zarr stores of frames, labels and optical flow.

    A store is one zarr v3 group per dataset split, readable by any zarr v3
    reader and memory-mapped zero-copy by vdatrain. See docs/store.md.
    """


@cli.command()
@click.argument("store", type=click.Path(file_okay=False, path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable JSON description instead of text.")
def inspect(store, as_json):
    """Describe STORE: arrays, shapes, dtypes, sizes on disk, complete samples, attributes."""
    from flowprep.store.inspect import describe_store, format_description

    d = describe_store(store)
    click.echo(json.dumps(d, indent=2) if as_json else format_description(d))


@cli.command()
@click.argument("store", type=click.Path(file_okay=False, path_type=str))
@click.option("--quiet", "-q", is_flag=True, help="No progress bar; print only problems and the summary line.")
def verify(store, quiet):
    """Recompute the checksum of every chunk of every complete sample in STORE.

    Exits 1 and names each missing, truncated or corrupt chunk file and its
    sample; exits 0 when every complete sample checks out. Incomplete samples
    (never finished writing) are counted, not reported as corrupt.
    """
    from flowprep.store.verify import verify_store

    report = verify_store(store, progress=not quiet and sys.stderr.isatty())
    for problem in report.problems:
        click.echo(f"CORRUPT {problem}", err=True)
    parts = ", ".join(f"{part} {c}/{report.total}" for part, c in report.complete.items())
    status = "OK" if report.ok else f"FAILED ({len(report.problems)} problems)"
    click.echo(f"{status}: {report.chunks} chunks, {report.nbytes / 1e6:.1f} MB checked; complete samples: {parts}")
    sys.exit(0 if report.ok else 1)


def _dataset_list(ctx, param, value: str) -> tuple[str, ...]:
    from flowprep.synth.generate import DATASETS

    names = tuple(v.strip() for v in value.split(",") if v.strip())
    unknown = [n for n in names if n not in DATASETS]
    if unknown or not names:
        raise click.BadParameter(f"unknown dataset(s) {unknown} (choose from {','.join(DATASETS)})")
    return names


@cli.command()
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Folder to write the replicas into (created; existing files are overwritten).")
@click.option("--scale", type=click.Choice(["tiny", "demo"]), default="tiny", show_default=True,
              help="tiny: a few seconds, for tests. demo: under a minute on 2 cores, big enough to train on.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same files.")
@click.option("--datasets", default="viper,synthia-seq,cityscapes-seq,bdd", show_default=True, callback=_dataset_list,
              help="Comma-separated replicas to write.")
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True, help="Rendering processes.")
def synth(out, scale, seed, datasets, workers):
    """Write small replicas of the raw VIPER, Synthia-Seq, Cityscapes-Seq and BDD layouts.

    Real file names, folders, image formats and label encodings, at reduced
    resolution, rendered from a procedural driving world; exact optical flow,
    occlusion masks and BDD's frame matches go to OUT/_truth/. See docs/synth.md.
    """
    from flowprep.synth.generate import generate

    summary = generate(out, scale=scale, seed=seed, datasets=datasets, workers=workers, progress=sys.stderr.isatty())
    for dataset, splits in summary["samples"].items():
        h, w = summary["resolution"][dataset]
        counts = ", ".join(f"{split} {len(ids)}" for split, ids in splits.items())
        click.echo(f"{dataset:<15} {w}x{h}  {summary['fps'][dataset]:g} fps  labelled samples: {counts}")
    click.echo(f"truth: {out}/_truth/")


@cli.command("synth-preview")
@click.argument("root", type=click.Path(file_okay=False, exists=True, path_type=str))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=str), help="Folder for the PNGs.")
@click.option("--zoom", type=click.IntRange(1, 8), default=3, show_default=True, help="Nearest-neighbour upscaling.")
def synth_preview(root, out, zoom):
    """Save one PNG per replica in ROOT: frame t | label (Cityscapes colours) | exact flow t -> t-k.

    Flow colours: hue = direction, saturation = magnitude; occluded pixels black.
    """
    from flowprep.synth.preview import preview

    for path in preview(root, out, zoom):
        click.echo(path)


def main():
    cli(prog_name="flowprep")
