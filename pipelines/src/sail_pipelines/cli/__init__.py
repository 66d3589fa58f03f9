"""The `sail` command: a thin layer that parses arguments, builds the config objects and
calls one step module. Every failure ends as one line on stderr and a non-zero exit.

arguments.py declares the command line, commands.py holds one handler per command."""

from __future__ import annotations

import json
import os
import sys
import traceback

from sail_pipelines.cli.arguments import parser
from sail_pipelines.errors import GateFailed, SailError

__all__ = ["main", "parser"]


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        result = args.handler(args)
    except SailError as exc:
        if os.environ.get("SAIL_DEBUG"):  # what led to it, the cause chain first
            traceback.print_exception(exc, file=sys.stderr)
        verdict = "GATE FAILED" if isinstance(exc, GateFailed) else "error"
        print(f"sail {args.command}: {verdict}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"sail {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one line; SAIL_DEBUG=1 shows the traceback
        if os.environ.get("SAIL_DEBUG"):
            raise
        print(
            f"sail {args.command}: unexpected error: {type(exc).__name__}: {exc} (SAIL_DEBUG=1 "
            "shows the traceback)",
            file=sys.stderr,
        )
        return 2
    if result is not None:
        print(json.dumps(result, default=str))
    return 0
