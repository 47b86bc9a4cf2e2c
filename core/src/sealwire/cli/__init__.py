"""The ``sealwire`` command line (ARCHITECTURE layer 11), built on click and rich.

Every expected failure is one line on stderr (``sealwire: error: ...``) and an
exit code from :class:`sealwire.cli.output.ExitCode`; a traceback means a bug
(or ``--debug``, which shows it). Commands live one group per module
(``_agent``, ``_send``, ``_trust``, ``_policy``, ``_plugins``, ``_store``,
``_sidecar``); plugins add theirs through the ``sealwire_cli_commands`` hook.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence

import click

from sealwire.cli.output import ExitCode, exit_code_for
from sealwire.errors import ConfigurationError, SealwireError
from sealwire.plugins import BLOCK_ENV, Registry, blocked_from_env, load_registry

__all__ = ["GLOBAL_FLAGS", "GLOBAL_OPTIONS", "main"]

GLOBAL_OPTIONS = ("--home", "--disable-plugin", "--log-level", "--log-format")
"""Global options that take a value; accepted before or after the sub-command."""

GLOBAL_FLAGS = ("--json", "--debug")
"""Global flags; accepted before or after the sub-command."""

HELP_ARGS = frozenset({"-h", "--help", "--version"})


def hoist_globals(argv: Sequence[str]) -> list[str]:
    """``argv`` with the global options moved before the sub-command, so that they are
    accepted anywhere (up to a ``--``, after which everything is an argument)."""
    front: list[str] = []
    rest: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        name = arg.partition("=")[0]
        if arg in GLOBAL_FLAGS or (name in GLOBAL_OPTIONS and "=" in arg):
            front.append(arg)
        elif arg in GLOBAL_OPTIONS and i + 1 < len(args):
            front.extend(args[i : i + 2])
            i += 1
        else:
            rest.append(arg)
        i += 1
    return front + rest


def _disabled_plugins(argv: Sequence[str]) -> set[str]:
    disabled: set[str] = set()
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg.startswith("--disable-plugin="):
            disabled.add(arg.partition("=")[2])
        elif arg == "--disable-plugin" and i + 1 < len(argv):
            disabled.add(argv[i + 1])
    return disabled


def _block_disabled_plugins(argv: Sequence[str]) -> None:
    """Apply ``--disable-plugin`` before any plugin loads: through the environment,
    so that every registry this process (and its children) loads leaves them out."""
    disabled = _disabled_plugins(argv)
    if disabled:
        os.environ[BLOCK_ENV] = ",".join(sorted(blocked_from_env() | disabled))


def _registry_for(argv: Sequence[str]) -> Registry:
    """Every plugin; if one cannot load, the one line saying which and how to go on
    without it, and then for ``--help`` and ``--version`` the built-in commands."""
    try:
        return load_registry()
    except ConfigurationError as exc:
        if not HELP_ARGS & set(argv):
            raise
        print(f"sealwire: error: {exc}", file=sys.stderr)
        return load_registry(load_entry_points=False)


def _debug_wanted(argv: Sequence[str]) -> bool:
    if "--debug" in argv:
        return True
    return os.environ.get("SEALWIRE_DEBUG", "").lower() in {"1", "true", "yes", "on"}


def _quiet_broken_pipe() -> int:
    """Python's recipe for a closed stdout (``sealwire card | head -c1``): point stdout
    at devnull so that the interpreter's final flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return int(ExitCode.FAILED)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sealwire`` command: returns the exit code."""
    argv = hoist_globals(sys.argv[1:] if argv is None else argv)
    debug = _debug_wanted(argv)
    try:
        _block_disabled_plugins(argv)
        registry = _registry_for(argv)
        from sealwire.cli._app import build_cli

        code = build_cli(registry).main(
            argv, prog_name="sealwire", standalone_mode=False, obj=registry
        )
        sys.stdout.flush()
        return int(code) if isinstance(code, int) else 0
    except click.exceptions.Exit as exc:  # --help, --version
        sys.stdout.flush()
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return int(ExitCode.USAGE if isinstance(exc, click.UsageError) else ExitCode.FAILED)
    except click.exceptions.Abort:
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except SystemExit as exc:  # click's own answer to a closed stdout (EPIPE)
        if isinstance(exc.__context__, BrokenPipeError):
            return _quiet_broken_pipe()
        raise
    except KeyboardInterrupt:
        return int(ExitCode.INTERRUPTED)
    except (SealwireError, TimeoutError, OSError) as exc:
        # OSError: a file a command reads or writes (permissions, a full disk).
        if debug:
            traceback.print_exc()
        print(f"sealwire: error: {_one_line(exc)}", file=sys.stderr)
        return int(exit_code_for(exc))


def _one_line(exc: BaseException) -> str:
    """The error as one line (a message over several lines is joined)."""
    if isinstance(exc, OSError) and not isinstance(exc, SealwireError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror}"
    return " ".join(str(exc).split()) or type(exc).__name__
