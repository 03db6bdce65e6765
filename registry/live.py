"""The DVCLive logger the stages use: DVCLive's, without timings, safe to end while another experiment of the same project ends."""

from __future__ import annotations

from pathlib import Path

import dvclive

SIGNAL = "DVCLIVE_STEP_COMPLETED"
TIMING_WORDS = ("runtime", "per_second", "step_time")  # transformers' and TRL's wall-clock metrics


def is_timing(name: str) -> bool:
    """True for a wall-clock metric (e.g. train/runtime, tokens_per_second): it differs on every run."""
    return any(word in name for word in TIMING_WORDS)


class Live(dvclive.Live):
    """`dvclive.Live` that leaves out wall-clock metrics and whose `end()` tolerates a concurrently removed signal file.

    Timings are not logged: the logs are committed to git (dvc.yaml: cache false) and a rebuild must reproduce them
    byte for byte; each stage writes its timings to the `timings` dataset instead (outside git and DVC).

    In a queued experiment DVCLive signals each step in the main project's `.dvc/tmp/exps/run/DVCLIVE_STEP_COMPLETED`,
    shared by every experiment of the queue, and `end()` removes it last, after checking that it exists. Two experiments
    ending together (`dvc queue start -j 2`) both pass the check and the second `os.remove` raises FileNotFoundError,
    failing a stage whose logs and outputs were already written. The file being gone is the outcome `end()` wants.
    """

    def log_metric(self, name: str, val: object, *args: object, **kwargs: object) -> None:
        if not is_timing(name):
            super().log_metric(name, val, *args, **kwargs)

    def end(self) -> None:
        try:
            super().end()
        except FileNotFoundError as error:
            if Path(error.filename or "").name != SIGNAL:
                raise
