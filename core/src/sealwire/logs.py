"""Logging for agents, sidecars and relays: console or JSON lines, with a redaction guard.

:func:`configure_logging` sets up the standard :mod:`logging` tree once per
process (the CLI calls it for ``--log-level`` and ``--log-format``; so does
``python -m sealwire_relay``): one handler on the root logger, writing to
standard error, either

* ``console``: ``2026-12-06T16:00:00.123Z INFO sealwire.relay message key=value ...``
* ``json``: one JSON object per line with ``time``, ``level``, ``logger``,
  ``message``, every structured field passed as ``extra=`` and, for an error
  logged with a traceback, ``exception``.

The stdlib rather than structlog: every library Sealwire runs on (uvicorn,
httpx, nats-py) logs through the stdlib, so one handler on the root logger
formats and guards all of their lines too, and core gains no dependency.

The guard, :class:`RedactionFilter`, sits on that handler: the value of a
structured field named like a secret (``key``, ``secret``, ``token``,
``password``, ``private``, ``seed``, ``plaintext``, ...) and any ``bytes``
value, as a field or as a ``%`` argument, is replaced with ``[redacted]``
before the line is formatted. It is a second line of defence: Sealwire's own
code never passes secrets or plaintext to a logger in the first place (the
tests run a whole exchange at debug level and search the lines for them).
"""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

from sealwire.errors import ConfigurationError

__all__ = [
    "LOG_FORMATS",
    "LOG_LEVELS",
    "REDACTED",
    "JsonFormatter",
    "ConsoleFormatter",
    "RedactionFilter",
    "configure_logging",
]

LOG_LEVELS: Mapping[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
"""The accepted ``--log-level`` values."""
LOG_FORMATS = ("console", "json")
"""The accepted ``--log-format`` values."""
REDACTED = "[redacted]"
"""What a refused value is replaced with."""

# Structured field names that may carry a secret: matched as a word of a
# snake_case or dotted name, so ``store_key`` and ``session.token`` are caught
# while ``monkey`` is not. Over-matching (``key_id``) only hides a harmless value.
_SECRET_NAME = re.compile(
    r"(?:^|[_.\-])(?:key|keys|secret|secrets|token|tokens|password|passwd|passphrase|"
    r"private|seed|plaintext|credential|credentials|authorization|cookie)(?:$|[_.\-])",
    re.IGNORECASE,
)
# Field names whose verdict (secret or not) is remembered: a process logs a few
# dozen distinct names; the bound keeps a caller inventing names from growing it.
MAX_CACHED_NAMES = 1024
# Attributes every LogRecord has: anything else on a record came through ``extra=``.
_RECORD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)
# Loggers of libraries whose debug output is the bytes on the wire: kept at
# INFO even when the process logs at debug (their frames are ciphertext, but a
# line per frame drowns everything else and helps no operator).
_CHATTY_LIBRARIES = ("hpack", "httpcore", "websockets", "nats", "aiosqlite", "asyncio")


@functools.lru_cache(maxsize=MAX_CACHED_NAMES)
def _is_secret_name(name: str) -> bool:
    return _SECRET_NAME.search(name) is not None


_BYTES = (bytes, bytearray, memoryview)


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields a record carries (those passed as ``extra=``), in order."""
    return {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRIBUTES}


class RedactionFilter(logging.Filter):
    """Replace secret-named fields and bytes values of a record with ``[redacted]``.

    Never drops a record: the line still says that something happened.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        fields = vars(record)
        for name in fields.keys() - _RECORD_ATTRIBUTES:
            if _is_secret_name(name) or isinstance(fields[name], _BYTES):
                fields[name] = REDACTED
        args = record.args
        if isinstance(args, Mapping):
            record.args = {
                k: REDACTED if isinstance(v, _BYTES) or _is_secret_name(str(k)) else v
                for k, v in args.items()
            }
        elif args and any(isinstance(a, _BYTES) for a in args):
            record.args = tuple(REDACTED if isinstance(a, _BYTES) else a for a in args)
        if isinstance(record.msg, _BYTES):
            record.msg = REDACTED
        return True


def _timestamp(record: logging.LogRecord) -> str:
    seconds = int(record.created)
    millis = int((record.created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in extra_fields(record).items():
            line.setdefault(name, value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    """``time LEVEL logger message key=value ...`` and the traceback, if any, below."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), record.levelname, record.name, record.getMessage()]
        parts += [f"{k}={_console_value(v)}" for k, v in extra_fields(record).items()]
        text = " ".join(parts)
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        return text


def _console_value(value: object) -> str:
    text = str(value)
    return json.dumps(text) if not text or any(c.isspace() or c == '"' for c in text) else text


class _SealwireHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`configure_logging` installs (found again to be replaced)."""


def configure_logging(
    level: str = "info", fmt: str = "console", *, stream: TextIO | None = None
) -> None:
    """Log at ``level`` (debug, info, warning, error, critical) in ``fmt`` (console or
    json) to ``stream`` (standard error by default), with the redaction guard.

    Calling it again replaces the previous configuration (not other handlers).
    ConfigurationError names the accepted values of a wrong argument.
    """
    number = LOG_LEVELS.get(level.lower()) if isinstance(level, str) else None
    if number is None:
        raise ConfigurationError(f"log level {level!r} is not one of: {', '.join(LOG_LEVELS)}")
    if fmt not in LOG_FORMATS:
        raise ConfigurationError(f"log format {fmt!r} is not one of: {', '.join(LOG_FORMATS)}")
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _SealwireHandler)]:
        root.removeHandler(old)
        old.close()
    handler = _SealwireHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    handler.addFilter(RedactionFilter())
    root.addHandler(handler)
    root.setLevel(number)
    for name in _CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(max(number, logging.INFO))
