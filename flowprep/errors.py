"""User-facing errors: the CLI prints their message (no traceback) and exits with status 2."""


class FlowprepError(Exception):
    """A problem with the user's input or arguments; the message names the file and what is wrong."""


class StoreError(FlowprepError):
    """A store is missing, malformed, of an unknown version, or inconsistent with what was asked."""
