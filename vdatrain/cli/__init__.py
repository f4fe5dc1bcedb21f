"""`vdatrain` command line. torch is imported inside commands so `--help` stays quick.

Exit status (flowprep.exits): 0 success; 1 the environment failed the command (permission, disk full) or a
check failed; 2 bad arguments, recipe or input. Either failure is one line naming the key or file.
"""

from __future__ import annotations

from vdatrain.cli.group import cli
from vdatrain.cli import check, predict, runs, train  # noqa: F401  (each adds its commands to the group)

__all__ = ["cli", "main"]


def main():
    cli(prog_name="vdatrain")
