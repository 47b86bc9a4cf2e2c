"""sealwire.logs: console and JSON lines, the redaction guard, and what an agent logs
when a handler fails (the operator gets the cause, the peer does not)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from testonly_binding import PlaintextTestPlugin

from sealwire.agent import Agent, TaskContext
from sealwire.errors import ConfigurationError
from sealwire.identity import Identity
from sealwire.logs import REDACTED, configure_logging
from sealwire.model import TaskState
from sealwire.plugins import load_registry
from sealwire.store import MemoryStore


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_the_fields(restore_logging: None) -> None:
    out = io.StringIO()
    configure_logging("debug", "json", stream=out)
    logging.getLogger("sealwire.test").info("hello %s", "world", extra={"peer": "sw1abc", "n": 3})
    try:
        raise ValueError("the cause")
    except ValueError:
        logging.getLogger("sealwire.test").exception("it failed")
    first, second = _lines(out)
    assert first["level"] == "info" and first["logger"] == "sealwire.test"
    assert first["message"] == "hello world"
    assert first["peer"] == "sw1abc" and first["n"] == 3
    assert str(first["time"]).endswith("Z")
    assert second["level"] == "error"
    assert "ValueError: the cause" in str(second["exception"])


def test_console_lines(restore_logging: None) -> None:
    out = io.StringIO()
    configure_logging("info", "console", stream=out)
    logging.getLogger("sealwire.test").debug("not shown")
    logging.getLogger("sealwire.test").warning("shown", extra={"route": "/v1/x"})
    (line,) = out.getvalue().splitlines()
    assert " WARNING sealwire.test shown route=/v1/x" in line


def test_configuring_twice_replaces_the_handler(restore_logging: None) -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("info", "json", stream=first)
    configure_logging("info", "console", stream=second)
    logging.getLogger("sealwire.test").warning("once")
    assert first.getvalue() == "" and "once" in second.getvalue()


@pytest.mark.parametrize(("level", "fmt"), [("verbose", "json"), ("info", "xml")])
def test_bad_arguments_name_the_allowed_values(level: str, fmt: str) -> None:
    with pytest.raises(ConfigurationError, match="is not one of"):
        configure_logging(level, fmt)


def test_the_guard_refuses_secret_fields_and_bytes(restore_logging: None) -> None:
    out = io.StringIO()
    configure_logging("debug", "json", stream=out)
    secret = bytes(range(32))
    log = logging.getLogger("sealwire.test")
    log.info(
        "fields",
        extra={
            "store_key": "c2VjcmV0",
            "session.token": "abc",
            "private": 1,
            "plaintext": "attack at dawn",
            "blob": secret,
            "peer": "sw1peer",
            "monkey": "kept",
        },
    )
    log.info("argument %r", secret)
    fields, argument = _lines(out)
    for name in ("store_key", "session.token", "private", "plaintext", "blob"):
        assert fields[name] == REDACTED, name
    assert fields["peer"] == "sw1peer" and fields["monkey"] == "kept"
    assert argument["message"] == f"argument {REDACTED!r}"
    assert "attack" not in out.getvalue() and "c2VjcmV0" not in out.getvalue()


async def test_a_failing_handler_is_logged_with_cause_and_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = load_registry(extra_plugins=[PlaintextTestPlugin()], load_entry_points=False)

    async def failing(task: TaskContext) -> None:
        raise RuntimeError("quota exceeded on /var/lib/upstream")

    server = Agent(
        Identity.generate(), MemoryStore(), name="s", listen=["tcp://127.0.0.1:0"],
        registry=registry,
    )  # fmt: skip
    server.on_message(failing)
    client = Agent(Identity.generate(), MemoryStore(), name="c", listen=[], registry=registry)
    caplog.set_level(logging.INFO)
    async with server, client:
        task = await client.send_message(client.peer(server.card.card), "go")
    assert task.status.state is TaskState.FAILED
    assert "quota" not in str(task) and "RuntimeError" not in str(task)
    (record,) = [r for r in caplog.records if r.getMessage().startswith("handler failed")]
    assert record.levelno == logging.ERROR
    assert "RuntimeError: quota exceeded on /var/lib/upstream" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError
