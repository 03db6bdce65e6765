"""DVC's failures as medreg's one error line: `error: <what> — <next step>` on stderr, exit status 2.

DVC logs through the loggers `dvc`, `dvc_objects` and `dvc_data` (`import dvc` gives them console handlers). In the
CLI, `captured()` holds those handlers back while a command runs: DVC's records are kept, never printed raw; a
DVC exception becomes a MedregError naming what failed, and `explain` appends the next step the HINTS map names
(an unreachable S3 remote: `medreg s3 start`; no remote: `dvc remote add`; files not in the cache: `dvc pull`).
DVC run as a command (`run_dvc`: `medreg pull`, `medreg run`) goes through this module's `__main__`, which hears
the one debug record `medreg pull` needs (a downloaded object whose hash does not match) without DVC's verbose log,
and its ERROR records are folded into one MedregError the same way.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from registry.errors import MedregError

LOGGERS = ("dvc", "dvc_objects", "dvc_data")
# DVC's warnings that say nothing to act on: a `--temp` experiment's outputs of stages the workspace does not have
HARMLESS = re.compile(r"No file hash info found for .*/\.dvc/tmp/exps/.*It won't be created")
DASH = " — "  # between what failed and the next step

S3_DOWN = "start the S3 server: `medreg s3 start` (or `make s3-up`); another endpoint: `dvc remote modify s3 endpointurl URL`"
HINTS: list[tuple[str, re.Pattern[str], str]] = [  # (key, pattern, next step); the first whose pattern occurs wins
    (
        "unreachable",
        re.compile(r"Could not connect to the endpoint URL|Cannot connect to host|Connect call failed|Connection refused", re.I),
        S3_DOWN,
    ),
    (
        "credentials",
        re.compile(r"Unable to locate credentials|InvalidAccessKeyId|SignatureDoesNotMatch|Forbidden|AccessDenied|NoCredentialsError", re.I),
        "credentials: `medreg s3 start` writes the local server's to .dvc/config.local; elsewhere set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
    ),
    (
        "no-such-remote",
        re.compile(r"remote '[^']*' doesn't exist|Unable to find remote", re.I),
        "list the remotes with `dvc remote list`; add one: `dvc remote add NAME URL` (or `medreg s3 start` for 's3')",
    ),
    (
        "no-remote",
        re.compile(r"no remote specified|No remote provided and no default remote set", re.I),
        "add one: `dvc remote add -d NAME URL` (or `medreg s3 start`), or name one with -r",
    ),
    (
        "not-cached",
        re.compile(r"Checkout failed|Missing cache files|neither locally nor on remote|failed to download|not in cache", re.I),
        "fetch the files: `dvc pull` (or `medreg pull`); a remote without them: `dvc push` from a clone that has them, or `dvc repro`",
    ),
    (
        "not-a-project",
        re.compile(r"not inside of a DVC repository|NotDvcRepoError|not a git repository", re.I),
        "run it inside the project (a folder with .dvc/), or make one: `git init && dvc init`",
    ),
    (
        "unknown-revision",
        re.compile(r"unknown Git revision|RevError|revision '[^']*' (does not exist|not found)", re.I),
        "list revisions with `git tag` and `dvc exp list`; fetch them with `git fetch --tags`",
    ),
    (
        "stage-failed",
        re.compile(r"failed to reproduce|failed to run: ", re.I),
        "fix what the stage printed above, then run it again (stages whose outputs are up to date are not re-run)",
    ),
    ("locked", re.compile(r"Unable to acquire lock|LockError", re.I), "another DVC command is running in this project: let it finish, then retry"),
]
DOC_LINK = re.compile(r"^\s*<https://error\.dvc\.org/[^>]*>\s*$")


def hint(text: str) -> tuple[str, str] | None:
    """(key, next step) for the first HINTS pattern that occurs in `text`, else None."""
    return next(((key, step) for key, pattern, step in HINTS if pattern.search(text)), None)


def one_line(text: str) -> str:
    """DVC's multi-line message on one line, without its error.dvc.org link."""
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip() and not DOC_LINK.match(line))


def explain(what: str, context: str = "", steps: dict[str, str] | None = None) -> str:
    """`what — next step` when `what` (or DVC's other records, `context`) matches HINTS and `what` names no step yet.

    `steps` overrides a hint's text by key (e.g. `medreg pull` itself has a better step for files not in the remote).
    """
    if DASH in what:
        return what
    found = hint(f"{what}\n{context}")
    if found is None:
        return what
    key, step = found
    return f"{what}{DASH}{(steps or {}).get(key, step)}"


# --------------------------------------------------------------------- DVC in this process


class _Held(list):
    """A DVC logger's handler list while a command runs: the capture only; handlers DVC adds (at `import dvc`) wait."""

    def __init__(self, capture: logging.Handler):
        super().__init__([capture])
        self.held: list[logging.Handler] = []

    def append(self, handler: logging.Handler) -> None:  # Logger.addHandler appends
        self.held.append(handler)


class Capture(logging.Handler):
    """DVC's WARNING and ERROR records of one command, kept rather than printed."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def texts(self, level: int = logging.WARNING) -> list[str]:
        return [record_text(r) for r in self.records if r.levelno >= level]


def record_text(record: logging.LogRecord) -> str:
    """A record's message and its exception's causes, on one line (as DVC prints it: `msg - cause: cause`)."""
    msg = record.getMessage()
    if record.exc_info and record.exc_info[1] is not None:
        cause = ": ".join(_causes(record.exc_info[1]))
        msg = f"{msg} - {cause}" if msg and cause else msg or cause
    return one_line(msg)


def _causes(exc: BaseException) -> list[str]:
    out = []
    while exc is not None:
        text = str(exc) or type(exc).__name__
        if text not in out:
            out.append(text)
        exc = exc.__cause__
    return out


def is_dvc_error(exc: BaseException) -> bool:
    """A DvcException (dvc, dvc-data, scmrepo's SCMError, GTO's exceptions): refused input or state, not a bug."""
    bases = []
    for module, name in (("dvc.exceptions", "DvcException"), ("scmrepo.exceptions", "SCMError"), ("gto.exceptions", "GTOException")):
        mod = sys.modules.get(module)
        if mod is not None and hasattr(mod, name):
            bases.append(getattr(mod, name))
    return bool(bases) and isinstance(exc, tuple(bases))


@contextmanager
def captured() -> Iterator[Capture]:
    """Hold DVC's console handlers back and keep its records while the block runs; a DVC exception: one MedregError.

    The error names DVC's first ERROR record (the specific failure, e.g. "failed to connect to s3 ...") or else the
    exception, and the next step (`explain`). Nothing needs `import dvc` here: handlers added later are held too.
    """
    capture = Capture()
    saved = {}
    for name in LOGGERS:
        logger = logging.getLogger(name)
        saved[name] = (logger.handlers, logger.propagate)
        logger.handlers = _Held(capture)
        logger.propagate = False
    try:
        yield capture
    except Exception as e:
        if not is_dvc_error(e):
            raise
        errors = capture.texts(logging.ERROR)
        what = errors[0] if errors else one_line(": ".join(_causes(e)))
        raise MedregError(explain(what, "\n".join([*capture.texts(), *_causes(e)]))) from None
    finally:
        for name in LOGGERS:
            logger = logging.getLogger(name)
            handlers, propagate = saved[name]
            held = logger.handlers.held if isinstance(logger.handlers, _Held) else []
            logger.handlers = [*handlers, *held]
            logger.propagate = propagate


# --------------------------------------------------------------------- DVC as a command

MARK = "medreg-dvc-debug: "  # a debug record this module's __main__ passes on (stderr), for `on_debug`
HEADER = re.compile(r"^(?:\d{4}-\d\d-\d\d [\d:,]+ )?(WARNING|ERROR): (.*)$")


def run_dvc(
    args: list[str],
    cwd: Path,
    on_debug: Callable[[str], None] | None = None,
    steps: dict[str, str] | None = None,
    what: str = "dvc",
    live: bool = False,
) -> None:
    """Run `dvc ARGS` in `cwd` with DVC's WARNING/ERROR records held back: a failure is one MedregError.

    `live` (a pipeline run): standard output and a stage's standard error pass through as they come. Otherwise
    DVC's output is shown only once it succeeds, with its warnings and notes as `warning: ...` lines. When it fails,
    its first ERROR record (and any note, e.g. "No remote provided") becomes one `<what> — <next step>` MedregError;
    the rest is not shown. `on_debug` hears each corrupted-object record (`medreg pull`).
    """
    cmd = [sys.executable, "-m", "registry.dvcerrors", *args]
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    records: list[tuple[str, list[str]]] = []  # (WARNING | ERROR | NOTE, lines)

    def read_stderr() -> None:
        for line in proc.stderr:
            text = line.rstrip("\n")
            if line.startswith(MARK):
                if on_debug:
                    on_debug(text[len(MARK) :])
            elif (m := HEADER.match(text)) is not None:
                records.append((m.group(1), [m.group(2)]))
            elif records and records[-1][0] == "ERROR":  # the lines of a multi-line error (DVC exits after it)
                records[-1][1].append(text)
            elif live:  # a stage's own output
                sys.stderr.write(line)
                sys.stderr.flush()
            elif text.strip():
                records.append(("NOTE", [text]))

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    shown = []
    for line in proc.stdout:
        if live:
            sys.stdout.write(line)
            sys.stdout.flush()
        else:
            shown.append(line)
    code = proc.wait()
    reader.join()
    errors = [one_line("\n".join(lines)) for level, lines in records if level == "ERROR"]
    others = [one_line("\n".join(lines)) for level, lines in records if level != "ERROR"]
    if code == 0:
        sys.stdout.write("".join(shown))
        sys.stdout.flush()
        for w in others:
            if not HARMLESS.search(w):
                print(f"warning: {w}", file=sys.stderr)
        return
    message = errors[0] if errors else f"{what} exited with status {code}"
    notes = [n for level, lines in records if level == "NOTE" for n in lines]
    if notes:
        message += f" ({'; '.join(n.strip().rstrip('.') for n in notes)})"
    raise MedregError(explain(message, "\n".join([*errors, *others]), steps))


def _main(argv: list[str]) -> int:
    """`dvc ARGV`, passing DVC's corrupted-object debug records to stderr (MARK) without turning on its debug log."""
    import dvc.logger  # noqa: F401 (`import dvc` sets up DVC's console handlers)
    from dvc.cli import main

    class Debug(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno < logging.INFO:
                if record.getMessage().startswith("corrupted cache file"):
                    sys.stderr.write(MARK + record.getMessage() + "\n")
                    sys.stderr.flush()
            else:
                logging.getLogger("dvc_data").handle(record)  # everything else goes where DVC sends it

    hashfile = logging.getLogger("dvc_data.hashfile.db")  # where a downloaded object's hash is checked
    hashfile.setLevel(logging.DEBUG)
    hashfile.addHandler(Debug(logging.DEBUG))
    hashfile.propagate = False
    return main(argv)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
