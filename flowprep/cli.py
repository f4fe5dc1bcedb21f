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


def main():
    cli(prog_name="flowprep")
