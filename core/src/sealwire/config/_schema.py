"""The schema of ``sealwire.toml``, checked where the file is read (pydantic v2).

Only the parse boundary uses pydantic: :func:`validate_document` turns the
parsed TOML into :class:`Document` or raises one
:class:`~sealwire.errors.ConfigurationError` naming the file, each bad key as a
dotted path (``agent.listen[1]``) and what is allowed there. The rest of the
code keeps using the frozen attrs :class:`~sealwire.config.AgentConfig` that
:mod:`sealwire.config._model` builds from it.

The tables that have a typed reader of their own are passed through as
tables here and read by it: ``[policy]`` by
:meth:`sealwire.policy.PolicyConfig.from_mapping`, ``[push]`` by
:meth:`sealwire.agent.PushPolicy.from_mapping`, each ``[bindings.<name>]`` by
its binding's :meth:`~sealwire.binding.Binding.check_options` (against the
loaded plugins).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from sealwire.config._defaults import DEFAULT_DESCRIPTION, DEFAULT_NAME
from sealwire.errors import ConfigurationError
from sealwire.identity import is_agent_id

__all__ = [
    "Document",
    "MAX_URL_LENGTH",
    "check_url",
    "validate_document",
]

MAX_URL_LENGTH = 2048
"""Longer than any listen or relay URL a person writes; bounds what a card repeats."""
MAX_SHOWN = 80
"""Characters of a bad value quoted in an error: enough to recognise it, and a long
value does not make the one line unreadable."""
RELAY_SCHEMES = ("http", "https")
"""A relay is an HTTP service (plain on loopback, TLS anywhere else)."""
_NOT_IN_URL = frozenset("\"'<>\\`{}|^")
"""Characters that cannot stand in a URL unescaped (RFC 3986): one that holds them was
cut from something else (``tcp://h:1", "evil``) or mistyped."""


def check_url(url: str, schemes: Sequence[str] = ()) -> str:
    """``url`` when it is ``SCHEME://HOST[:PORT][/PATH]`` (and its scheme among
    ``schemes``, when given); ValueError saying what is wrong otherwise."""
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"a URL is at most {MAX_URL_LENGTH} characters")
    if any(c.isspace() or not c.isprintable() or c in _NOT_IN_URL for c in url):
        raise ValueError(f"{url!r} is not a URL (it holds a space, a quote or a control character)")
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        raise ValueError(f"{url!r} is not a URL of the form SCHEME://HOST:PORT")
    try:
        parts.port  # noqa: B018 - urllib checks the port when it is read
    except ValueError:
        raise ValueError(f"{url!r} has no valid port (0 to 65535)") from None
    if schemes and parts.scheme not in schemes:
        raise ValueError(f"{url!r}: the scheme must be one of {', '.join(schemes)}")
    return url


class _Table(BaseModel):
    """A TOML table: no key but those declared, no value coerced to another type."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


OptionValue = StrictStr | StrictInt | StrictFloat | StrictBool


class StoreTable(BaseModel):
    """``[agent.store]``: ``backend`` and that backend's options (checked by the backend
    against the loaded plugins, see :func:`sealwire.config.check_store`)."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    backend: StrictStr = Field(
        min_length=1, description="the name of a store backend (sqlite, aws, gcp, vault, ...)"
    )

    @model_validator(mode="after")
    def _options_are_scalars(self) -> StoreTable:
        for name, value in (self.model_extra or {}).items():
            if isinstance(value, list | dict) or not isinstance(value, str | int | float):
                raise ValueError(f"option {name!r} must be a string, a number or a boolean")
        return self

    def options(self) -> dict[str, str]:
        """The options as the backends read them: strings (``true``/``false`` for flags)."""
        out: dict[str, str] = {}
        for name, value in (self.model_extra or {}).items():
            if isinstance(value, bool):
                out[name] = "true" if value else "false"
            else:
                out[name] = str(value)
        return out


class AgentTable(_Table):
    """``[agent]``."""

    name: StrictStr = DEFAULT_NAME
    description: StrictStr = DEFAULT_DESCRIPTION
    listen: list[Annotated[StrictStr, AfterValidator(check_url)]] = Field(default_factory=list)
    relay: StrictStr | None = None
    relay_id: StrictStr | None = None
    relay_ca: StrictStr | None = None
    trust: Literal["tofu", "pinned", "allowlist"] = "tofu"
    store: StoreTable | None = None

    @field_validator("relay")
    @classmethod
    def _relay_url(cls, url: str | None) -> str | None:
        return None if url is None else check_url(url, RELAY_SCHEMES)

    @field_validator("relay_id")
    @classmethod
    def _relay_id(cls, relay_id: str | None) -> str | None:
        if relay_id is not None and not is_agent_id(relay_id):
            raise ValueError("must be a relay id (sw1..., as its signed GET /v1/info shows)")
        return relay_id


class Document(_Table):
    """The whole file."""

    agent: AgentTable = Field(default_factory=AgentTable)
    policy: dict[str, Any] = Field(default_factory=dict)
    bindings: dict[str, dict[str, Any]] = Field(default_factory=dict)
    push: dict[str, Any] = Field(default_factory=dict)


_MODELS: Mapping[tuple[str, ...], type[BaseModel]] = {
    (): Document,
    ("agent",): AgentTable,
}
"""The table at each path, to list its keys when an unknown one is found there."""

_KINDS = {
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
    "bool_type": "true or false",
    "int_type": "an integer",
    "float_type": "a number",
}


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else f"{text[: MAX_SHOWN - 3]}..."


def _path(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _description(loc: Sequence[int | str]) -> str | None:
    """The description of the field at ``loc``, when its model declares one."""
    model: type[BaseModel] | None = Document
    field = None
    for part in loc:
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return None
        field = model.model_fields[part]
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        model = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
    return field.description if field is not None else None


def _problem(error: Mapping[str, Any]) -> str:
    loc = tuple(error["loc"])
    path = _path(loc) or "the file"
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        model = _MODELS.get(tuple(str(p) for p in loc[:-1]))
        allowed = ", ".join(model.model_fields) if model is not None else "none"
        return f"unknown key {path} (allowed: {allowed})"
    if kind == "literal_error":
        return f"{path} must be one of {ctx.get('expected', '?')}, not {_shown(error['input'])}"
    described = _description(loc)
    if kind in ("missing", "string_too_short") and described:
        return f"{path} must be set to {described}"
    if kind in _KINDS:
        return f"{path} must be {_KINDS[kind]}, not {_shown(error['input'])}"
    if kind == "value_error":
        return f"{path}: {ctx.get('error', error['msg'])}"
    if kind == "string_too_short":
        return f"{path} must not be empty"
    return f"{path}: {error['msg']}"


def validate_document(data: Mapping[str, Any], *, source: str) -> Document:
    """The parsed file as a :class:`Document`, or one ConfigurationError naming ``source``,
    every bad key and what it allows (one line: problems joined by ``;``)."""
    try:
        return Document.model_validate(data)
    except ValidationError as exc:
        problems = [_problem(e) for e in exc.errors(include_url=False)]
        raise ConfigurationError(f"{source}: {'; '.join(problems)}") from None
