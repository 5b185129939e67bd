"""What every command shares on the terminal: the two consoles, the progress bar, the rule that turns a user error
into a one-line message and an exit status, and the entry point that reports an output that cannot be written."""

from __future__ import annotations

import errno
import functools
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from faceage.errors import FaceageError, ImageError

console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # messages stay on one line: paths can be copied


def friendly_errors(func):
    """Turn FaceageError into a one-line message on stderr and an exit status: 2 when an input image could not be read
    (ImageError), 1 for anything else (a bad option, a missing file or model); see the README's exit-status rule."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except FaceageError as exc:
            err_console.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(2 if isinstance(exc, ImageError) else 1) from None

    return wrapper


def megabytes(value: float, option: str = "--max-file-mb") -> int:
    """A size option in MB as bytes, refused unless positive."""
    if not value > 0:  # also NaN
        raise FaceageError(f"{option} must be a positive number of megabytes, not {value}")
    return int(value * 1_000_000)


def progress_bar() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=err_console, transient=False)  # fmt: skip


class Tick:
    """``update(done, total)`` of a progress bar, which also remembers the last total it was told."""

    def __init__(self, bar: Progress, task):
        self.bar, self.task, self.total = bar, task, 0

    def __call__(self, done: int, total: int) -> None:
        self.total = total
        self.bar.update(self.task, completed=done, total=total)


@contextmanager
def progress(description: str) -> Iterator[Tick]:
    """A progress bar on stderr for the ``with`` block; yields its :class:`Tick`."""
    with progress_bar() as bar:
        yield Tick(bar, bar.add_task(description, total=None))


def run_guarded(app: Callable[[], None]) -> None:
    """Run the typer ``app``, with a message instead of a traceback when the output itself cannot be written
    (standard output on a full disk or closed, a broken pipe)."""
    try:
        app()
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EPIPE, errno.EBADF, errno.EIO):
            raise
        _quiet_stdout()
        sys.stderr.write(f"error: the output could not be written ({os.strerror(exc.errno)})\n")
        sys.exit(1)
    except SystemExit as done:
        try:  # what is still buffered goes out now, so that a failure is reported, not lost at exit
            sys.stdout.flush()
        except OSError as exc:
            _quiet_stdout()
            sys.stderr.write(f"error: the output could not be written ({os.strerror(exc.errno or 0)})\n")
            sys.exit(1)
        raise done


def _quiet_stdout() -> None:
    """Point standard output at /dev/null so that Python's flush at exit does not print a second error."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
