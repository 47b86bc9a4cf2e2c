"""Errors of the relay and its client, each with its wire code and HTTP status.

The relay answers a failed request with ``{"error": {"code", "message", ...}}``
and the HTTP status of the error's class; the client turns the code back into
the same class, so both sides raise the same exception.
"""

from __future__ import annotations

from typing import Any

from sealwire.errors import AuthenticationError, DecodeError, RemoteProtocolError, SealwireError

__all__ = [
    "EpochConflictError",
    "ForbiddenError",
    "LimitExceeded",
    "NotFoundError",
    "RelayAuthError",
    "RelayCertificateError",
    "RelayError",
    "RelayIdentityError",
    "RelayUnavailable",
    "error_from_wire",
    "error_to_wire",
]


class RelayError(SealwireError):
    """A request to the relay failed."""

    code = "relay_error"
    status: int = 500


class RelayUnavailable(RelayError):
    """The relay could not be reached or answered something that is not the relay protocol."""

    code = "unavailable"
    status: int = 503


class RelayAuthError(RelayError, AuthenticationError):
    """Challenge-response authentication failed, or the session is missing or expired."""

    code = "unauthenticated"
    status: int = 401

    def __init__(self, message: str = "authentication failed") -> None:
        AuthenticationError.__init__(self, message)


class ForbiddenError(RelayAuthError):
    """The authenticated agent may not do this (someone else's mailbox or prekeys)."""

    code = "forbidden"
    status: int = 403


class RelayIdentityError(RelayAuthError):
    """The relay did not prove the identity this client expects (its pinned ``relay_id``).

    Raised by the client, never sent on the wire: the relay at the configured URL
    is another relay (or an impostor), so nothing is signed for it and no token
    is taken from it. ``expected`` and ``claimed`` are relay ids (public).
    """

    code = "wrong_relay"
    status: int = 401

    def __init__(self, message: str, *, expected: str, claimed: str | None) -> None:
        self.expected = expected
        self.claimed = claimed
        super().__init__(message)


class RelayCertificateError(RelayAuthError):
    """The relay's TLS certificate is not trusted (not in the system store nor the
    configured relay CA file). Raised by the client, never sent on the wire."""

    code = "untrusted_certificate"
    status: int = 401


class NotFoundError(RelayError):
    """No such prekey bundle, key package, group or route."""

    code = "not_found"
    status: int = 404


class LimitExceeded(RelayError):
    """A configured limit refused the request; ``limit`` names it.

    ``limit`` is one of ``message_size``, ``request_size``, ``mailbox_depth``,
    ``rate``, ``prekeys``, ``key_packages``, ``group_log``, ``group_members``,
    ``card_size``, ``cards``, ``connections``, ``challenges``. ``retry_after``
    (seconds) is set for ``rate``.
    Nothing already accepted is dropped: the refused request simply did not happen.
    """

    code = "limit_exceeded"
    status: int = 429

    def __init__(self, limit: str, message: str, *, retry_after: float | None = None) -> None:
        self.limit = limit
        self.retry_after = retry_after
        super().__init__(f"{limit}: {message}")


class EpochConflictError(RelayError, RemoteProtocolError):
    """The group log already holds a commit for this epoch (or the epoch is not the next one).

    ``expected_epoch`` is the epoch the log accepts a commit for now; the sender
    should fetch the log, process what it missed and retry. ``commit_seq`` is
    the log position of the latest commit (the one a member that found it
    invalid names in ``supersedes``), when the log holds one.
    """

    code = "epoch_conflict"
    status: int = 409

    def __init__(
        self, message: str, *, expected_epoch: int | None = None, commit_seq: int | None = None
    ) -> None:
        self.expected_epoch = expected_epoch
        self.commit_seq = commit_seq
        super().__init__(message)


class _BadRequest(RelayError):
    """Wire form of a :class:`~sealwire.errors.DecodeError` raised by the relay."""

    code = "bad_request"
    status: int = 400


_BY_CODE: dict[str, type[RelayError]] = {
    str(cls.code): cls
    for cls in (
        RelayError,
        RelayUnavailable,
        RelayAuthError,
        ForbiddenError,
        NotFoundError,
        LimitExceeded,
        EpochConflictError,
    )
}

# LimitExceeded statuses by limit: a too-large body is 413, a full mailbox or
# card directory 507.
_LIMIT_STATUS = {
    "message_size": 413,
    "request_size": 413,
    "card_size": 413,
    "mailbox_depth": 507,
    "cards": 507,
}


def error_to_wire(exc: SealwireError) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body for an error the relay raised on purpose."""
    body: dict[str, Any] = {"message": str(exc)}
    if isinstance(exc, DecodeError):
        body.update(code=_BadRequest.code, field=exc.field)
        return _BadRequest.status, {"error": body}
    if not isinstance(exc, RelayError):
        return RelayError.status, {"error": {"code": RelayError.code, "message": "internal"}}
    body["code"] = exc.code
    status = exc.status
    if isinstance(exc, LimitExceeded):
        body.update(limit=exc.limit, retry_after=exc.retry_after)
        status = _LIMIT_STATUS.get(exc.limit, status)
    elif isinstance(exc, EpochConflictError):
        body["expected_epoch"] = exc.expected_epoch
        body["commit_seq"] = exc.commit_seq
    return status, {"error": body}


def error_from_wire(status: int, body: object) -> SealwireError:
    """The exception a client raises for an error answer (never raises itself)."""
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return RelayUnavailable(f"relay answered HTTP {status} without an error body")
    code = err.get("code")
    message = str(err.get("message", ""))[:500]
    if code == _BadRequest.code:
        field = err.get("field")
        if not isinstance(field, str):
            return DecodeError(message)
        return DecodeError(message.removeprefix(f"{field}: "), field=field)
    if code == LimitExceeded.code:
        retry = err.get("retry_after")
        return LimitExceeded(
            str(err.get("limit", "?")),
            message.partition(": ")[2] or message,
            retry_after=float(retry) if isinstance(retry, (int, float)) else None,
        )
    if code == EpochConflictError.code:
        expected = err.get("expected_epoch")
        epoch = expected if type(expected) is int else None
        seq = err.get("commit_seq")
        return EpochConflictError(
            message, expected_epoch=epoch, commit_seq=seq if type(seq) is int else None
        )
    cls = _BY_CODE.get(code) if isinstance(code, str) else None
    if cls is None:
        return RelayError(f"HTTP {status}: {message}")
    return cls(message)
