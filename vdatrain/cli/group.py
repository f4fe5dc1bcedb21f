"""The `vdatrain` command group and the exit-code policy of its commands (flowprep.exits).

Exit status: 0 success; 1 the environment failed the command (permission, disk full) or a check found a
problem; 2 bad arguments, recipe or input. Either failure is one line naming the key or file.
"""

from __future__ import annotations

import subprocess

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
