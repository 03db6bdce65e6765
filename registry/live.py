"""The DVCLive logger the stages use: DVCLive's, safe to end while another experiment of the same project ends."""

from __future__ import annotations

from pathlib import Path

import dvclive

SIGNAL = "DVCLIVE_STEP_COMPLETED"


class Live(dvclive.Live):
    """`dvclive.Live` whose `end()` tolerates a concurrently removed VS Code signal file.

    In a queued experiment DVCLive signals each step in the main project's `.dvc/tmp/exps/run/DVCLIVE_STEP_COMPLETED`,
    shared by every experiment of the queue, and `end()` removes it last, after checking that it exists. Two experiments
    ending together (`dvc queue start -j 2`) both pass the check and the second `os.remove` raises FileNotFoundError,
    failing a stage whose logs and outputs were already written. The file being gone is the outcome `end()` wants.
    """

    def end(self) -> None:
        try:
            super().end()
        except FileNotFoundError as error:
            if Path(error.filename or "").name != SIGNAL:
                raise
