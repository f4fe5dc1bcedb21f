"""`vdatrain` command line. torch is imported inside commands so `--help` stays quick."""

from __future__ import annotations

import click

from vdatrain import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vdatrain")
def cli():
    """Train and evaluate domain-adaptive video semantic segmentation on flowprep stores."""


def main():
    cli(prog_name="vdatrain")
