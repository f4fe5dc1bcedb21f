"""User-facing errors: the CLI prints their message (no traceback) and exits with status 2."""


class FlowprepError(Exception):
    """A problem with the user's input or arguments; the message names the file and what is wrong."""


class Unusable(FlowprepError):
    """An input sample that cannot be used; ingest skips it and reports `kind` (grouped) and `detail`."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind, self.detail = kind, detail


class StoreError(FlowprepError):
    """A store is missing, malformed, of an unknown version, or inconsistent with what was asked."""
