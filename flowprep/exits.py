"""One exit-code policy for both command lines (flowprep and vdatrain).

- 0: success.
- 1: the command ran and found a problem (e.g. `flowprep verify` found corrupt chunks), or the
  environment failed it: permission denied, disk full, file size limit. One line names the file.
- 2: bad arguments or bad input: a recipe key, a store, a weights file. One line names the key or file.
- 141: the reader of our output went away (`| head`): nothing is printed, as for a process killed by SIGPIPE.

Never a traceback for either kind. An error raised inside a DataLoader worker reaches the main
process with the worker's traceback folded into its message; only the original message is shown.
"""

from __future__ import annotations

import logging
import os
import re
import sys

import click

WORKER_TRACEBACK = "Original Traceback"  # how torch.utils.data re-raises a worker's error
_EXCEPTION_LINE = re.compile(r"^[\w.]+: ")


class ProblemFound(Exception):
    """The command ran and found a problem (exit 1): a corrupt chunk, a loss that is no longer finite. The
    message is the one line printed."""


def one_line(e: BaseException) -> str:
    """The message of `e` on one line (a worker's re-raised error: its original last line, without the type)."""
    text = str(e).strip()
    if WORKER_TRACEBACK in text:
        text = _EXCEPTION_LINE.sub("", text.splitlines()[-1].strip(), count=1)
    return text.splitlines()[0] if text else type(e).__name__


def invoke_guarded(group: click.Group, ctx: click.Context, user_errors: tuple[type[BaseException], ...]):
    """Run `group.invoke(ctx)` under the policy above (click's own errors keep their handling)."""
    try:
        return click.Group.invoke(group, ctx)
    except user_errors as e:
        click.echo(f"error: {one_line(e)}", err=True)
        ctx.exit(2)
    except ProblemFound as e:
        click.echo(f"error: {one_line(e)}", err=True)
        ctx.exit(1)
    except BrokenPipeError:  # whoever read our output stopped (`vdatrain recipes | head`): not an error to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush must not fail again
        ctx.exit(141)  # what a shell reports for a process ended by SIGPIPE
    except OSError as e:  # permission, disk full, read-only file system, file size limit
        click.echo(f"error: {one_line(e)}", err=True)
        # zarr's concurrent chunk writes that were still pending when the first failed would report themselves
        # at exit ("Task was destroyed", tracebacks): the line above already says what failed
        logging.getLogger("asyncio").setLevel(logging.CRITICAL + 1)
        ctx.exit(1)
