"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class SailError(Exception):
    """A failure the user can act on: its message is the whole report, no traceback."""


class GateFailed(SailError):
    """The gate refused the candidate; distinct so callers can tell a verdict from a fault."""
