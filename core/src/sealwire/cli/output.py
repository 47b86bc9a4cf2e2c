"""What every ``sealwire`` command shares: the global options, output, errors, exit codes.

Plugin commands (:class:`sealwire.components.CliCommand`) use this module too:
:func:`state` for ``--home``, ``--json`` and the registry; :func:`emit` for data
(JSON under ``--json``, else a table or lines); :func:`waiting` for a spinner
while something waits; and a :class:`sealwire.errors.SealwireError` for an
expected failure, which :func:`exit_code_for` maps to the process exit code.
"""

from __future__ import annotations

import contextlib
import enum
import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import click

from sealwire.errors import ConfigurationError

if TYPE_CHECKING:
    from rich.console import Console

    from sealwire.plugins import Registry

__all__ = [
    "EXIT_CODES",
    "UNATTACHED_WIDTH",
    "CliState",
    "ExitCode",
    "Table",
    "emit",
    "exit_code_for",
    "note",
    "state",
    "stderr_console",
    "stdout_console",
    "waiting",
]


class ExitCode(enum.IntEnum):
    """The exit codes of every ``sealwire`` command (the one table; docs/cli.md shows it)."""

    OK = 0
    FAILED = 1
    USAGE = 2
    UNREACHABLE = 3
    CONFIGURATION = 4
    TIMED_OUT = 5
    INTERRUPTED = 130


EXIT_CODES: Mapping[ExitCode, str] = {
    ExitCode.OK: "success",
    ExitCode.FAILED: "the task failed, was rejected or canceled; refused; any other error",
    ExitCode.USAGE: "usage: unknown command or option, missing or bad argument",
    ExitCode.UNREACHABLE: "a peer or the relay could not be reached",
    ExitCode.CONFIGURATION: "configuration: bad sealwire.toml or option value, broken plugin",
    ExitCode.TIMED_OUT: "no answer within --timeout (the task id is printed)",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C)",
}
"""Each exit code and when a command returns it."""

UNATTACHED_WIDTH = 200
"""Columns of a table printed to a pipe or file: wide enough that an agent id
(about 60 characters) and a binding URI never wrap, which would break ``grep``."""


def exit_code_for(exc: BaseException) -> ExitCode:
    """The exit code of an expected failure ``exc`` (see :data:`EXIT_CODES`)."""
    from sealwire.relay import RelayUnavailable
    from sealwire.transport import TransportError

    if isinstance(exc, TransportError | RelayUnavailable | ConnectionError):
        return ExitCode.UNREACHABLE
    if isinstance(exc, ConfigurationError):
        return ExitCode.CONFIGURATION
    if isinstance(exc, TimeoutError):
        return ExitCode.TIMED_OUT
    return ExitCode.FAILED


@attrs.frozen(kw_only=True)
class CliState:
    """The global options of this run, and the plugins loaded for it."""

    home: Path
    json: bool
    debug: bool
    registry: Registry


def state() -> CliState:
    """The global options of the running command (inside a ``sealwire`` command only)."""
    ctx = click.get_current_context()
    found = ctx.find_object(CliState)
    if found is None:
        raise click.UsageError("this command runs inside `sealwire`, which sets its options")
    return found


def stdout_console() -> Console:
    """A rich console on stdout; a fixed wide width when stdout is not a terminal."""
    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=UNATTACHED_WIDTH, color_system=None)
    return console


def stderr_console() -> Console:
    """A rich console on stderr (spinners and notes)."""
    from rich.console import Console

    return Console(stderr=True, highlight=False)


@attrs.frozen(kw_only=True)
class Table:
    """A table for people (rich) whose rows are also the data of ``--json``."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    show_header: bool = True


def emit(data: Any, human: Table | Sequence[str] | Callable[[], None] | None = None) -> None:
    """Print ``data`` as JSON under ``--json`` (or when no ``human`` form is given);
    else the ``human`` form: a :class:`Table`, lines, or a function that prints."""
    if state().json or human is None:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    elif isinstance(human, Table):
        _print_table(human)
    elif callable(human):
        human()
    else:
        for line in human:
            sys.stdout.write(f"{line}\n")


def _print_table(table: Table) -> None:
    from rich.table import Table as RichTable

    rich_table = RichTable(title=table.title, title_justify="left", show_header=table.show_header)
    for column in table.columns:
        rich_table.add_column(column, overflow="fold")
    for row in table.rows:
        rich_table.add_row(*row)
    stdout_console().print(rich_table)


def note(text: str) -> None:
    """A line for people on stderr (never data: ``--json`` output stays on stdout)."""
    sys.stderr.write(f"{text}\n")
    sys.stderr.flush()


@contextlib.contextmanager
def waiting(text: str) -> Iterator[None]:
    """A spinner with the elapsed time on stderr while the block runs, when stderr is a
    terminal (nothing otherwise, so logs and pipes stay clean)."""
    console = stderr_console()
    if not console.is_terminal:
        yield
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    with progress:
        progress.add_task(text, total=None)
        yield


def configure_logging(level: str, fmt: str) -> None:
    """The one call site of the logging configuration (``--log-level``, ``--log-format``):
    :func:`sealwire.logs.configure_logging`, with its redaction guard."""
    from sealwire.logs import configure_logging as configure

    configure(level, fmt)
