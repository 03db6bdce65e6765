"""One error type for refused input or configuration, and one exit-status convention for the CLI and the stages.

A `MedregError` means the input, a catalog or params is wrong: its message names the file, row or key, and the
command exits with status 2 having written nothing. Any other exception is a bug: it keeps its traceback (status 1).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

EXIT_REFUSED = 2


class MedregError(Exception):
    """Refused input or configuration; the message says what and where (file:line, entry, params key)."""


def run_stage(main: Callable[..., None]) -> None:
    """Run a stage's `main(*argv)`; a MedregError is printed (no traceback) and exits with status 2."""
    try:
        main(*sys.argv[1:])
    except MedregError as e:
        print(f"error: {e}", file=sys.stderr)
        print("nothing was written; the previous outputs are unchanged", file=sys.stderr)
        sys.exit(EXIT_REFUSED)
