"""Google Cloud Secret Manager as a :class:`sealwire.store.SecretsBackend`
(google-cloud-secret-manager).

Secrets, in ``projects/<project>``, named ``<prefix>-head`` and
``<prefix>-blob-<sha256>`` (secret ids allow letters, digits, ``-`` and ``_``).
The head's versions hold the sealed heads; which one is current is the head
secret's annotation ``sealwire-current`` (a version number). Blobs are one
version each, deleted with their secret when no head names them.

Compare-and-set (Secret Manager has no conditional ``AddSecretVersion``; it has
etags on the secret): a commit adds a version, reads the secret (its etag and
``sealwire-current``), gives up with a lost race unless ``sealwire-current`` is
still the version this agent read, then updates the annotation with that
etag: Secret Manager refuses the update (ABORTED) if the secret changed since
the read. Then the superseded version is destroyed (so it is no longer billed).
Every payload carries its CRC32C, checked by the service and on access.

Faults: ``RESOURCE_EXHAUSTED`` (429), ``UNAVAILABLE``/``INTERNAL``/``DEADLINE_EXCEEDED``
and an unreachable endpoint are retried at most ``attempts`` times with
exponential backoff, then :class:`StoreThrottledError` /
:class:`StoreUnavailableError`; ``UNAUTHENTICATED``/``PERMISSION_DENIED`` get one
retry with a fresh client (credentials reloaded), then
:class:`StoreCredentialsError`.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable
from typing import Any

import google_crc32c
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_errors
from google.cloud import secretmanager_v1 as sm

from sealwire.store import (
    CallCounter,
    LostRace,
    StoreCredentialsError,
    StoreError,
    StoreThrottledError,
    StoreUnavailableError,
)
from sealwire_store_gcp._options import DEFAULT_ATTEMPTS, DEFAULT_BACKOFF

__all__ = [
    "BACKOFF_MAX",
    "CURRENT_ANNOTATION",
    "DEFAULT_ATTEMPTS",
    "DEFAULT_BACKOFF",
    "REQUEST_TIMEOUT",
    "GcpSecretsBackend",
]

CURRENT_ANNOTATION = "sealwire-current"
BACKOFF_MAX = 2.0
"""Seconds between two retries at most."""
REQUEST_TIMEOUT = 10.0
"""Seconds for one call (a 64 KiB payload is written in well under a second)."""
READ_RACES = 5
"""Reads of the head in a row that may find its version destroyed by a newer commit."""

_THROTTLED = (gexc.TooManyRequests, gexc.ResourceExhausted)
_UNAVAILABLE = (
    gexc.ServiceUnavailable,
    gexc.InternalServerError,
    gexc.GatewayTimeout,
    gexc.DeadlineExceeded,
    gexc.BadGateway,
)
_CREDENTIALS = (gexc.Unauthenticated, gexc.PermissionDenied, gexc.Unauthorized, gexc.Forbidden)


def _network_errors() -> tuple[type[BaseException], ...]:
    import requests

    return (requests.ConnectionError, requests.Timeout)


class GcpSecretsBackend:
    """Head and blobs of one agent in one project's Secret Manager."""

    def __init__(
        self,
        client_factory: Callable[[], Any],
        project: str,
        prefix: str,
        *,
        attempts: int = DEFAULT_ATTEMPTS,
        backoff: float = DEFAULT_BACKOFF,
        counter: CallCounter | None = None,
    ) -> None:
        if attempts < 1:
            raise StoreError("attempts must be 1 or more")
        self._factory = client_factory
        self._client = client_factory()
        self.project = project
        self.prefix = prefix
        self._attempts = attempts
        self._backoff = backoff
        self.counter = counter or CallCounter()
        self._network = _network_errors()

    @property
    def head_name(self) -> str:
        return f"projects/{self.project}/secrets/{self.prefix}-head"

    def blob_name(self, name: str) -> str:
        return f"projects/{self.project}/secrets/{self.prefix}-blob-{name}"

    def _call(self, operation: str, sent: int, fn: Callable[[Any], Any]) -> Any:
        refreshed = False
        last: StoreError = StoreUnavailableError(f"secretmanager {operation}: no attempt made")
        attempt = 0
        while attempt < self._attempts:
            attempt += 1
            try:
                result = fn(self._client)
            except _THROTTLED:
                self.counter.count(operation, sent)
                last = StoreThrottledError(
                    f"secretmanager {operation}: RESOURCE_EXHAUSTED {attempt} times"
                )
            except (*_CREDENTIALS, auth_errors.GoogleAuthError) as exc:
                self.counter.count(operation, sent)
                if refreshed:
                    raise StoreCredentialsError(
                        f"secretmanager {operation}: credentials refused ({type(exc).__name__})"
                    ) from None
                refreshed = True
                attempt -= 1  # a fresh client is not a retry of the fault
                self._close_client()
                self._client = self._factory()
                continue
            except _UNAVAILABLE as exc:
                self.counter.count(operation, sent)
                last = StoreUnavailableError(f"secretmanager {operation}: {type(exc).__name__}")
            except gexc.GoogleAPICallError:
                self.counter.count(operation, sent)  # answered: the caller decides
                raise
            except self._network as exc:
                self.counter.count(operation, sent)
                last = StoreUnavailableError(
                    f"secretmanager {operation}: unreachable ({type(exc).__name__})"
                )
            else:
                self.counter.count(operation, sent, _received(result))
                return result
            if attempt < self._attempts:
                delay = min(BACKOFF_MAX, self._backoff * 2 ** (attempt - 1))
                time.sleep(delay * random.uniform(0.5, 1.0))
        raise last

    def _access(self, operation: str, version: str) -> bytes:
        result = self._call(
            operation, 0, lambda c: c.access_secret_version(name=version, timeout=REQUEST_TIMEOUT)
        )
        data = bytes(result.payload.data)
        if result.payload.data_crc32c and google_crc32c.value(data) != result.payload.data_crc32c:
            raise StoreError("secretmanager: a payload failed its CRC32C check")
        return data

    def _add(self, operation: str, secret: str, content: bytes) -> str:
        payload = sm.SecretPayload(data=content, data_crc32c=google_crc32c.value(content))
        result = self._call(
            operation,
            len(content),
            lambda c: c.add_secret_version(parent=secret, payload=payload, timeout=REQUEST_TIMEOUT),
        )
        return str(result.name)

    def _create(self, operation: str, secret: str, annotations: dict[str, str]) -> None:
        secret_id = secret.rsplit("/", 1)[1]
        body = sm.Secret(
            replication=sm.Replication(automatic=sm.Replication.Automatic()),
            labels={"sealwire": "agent-state"},
            annotations=annotations,
        )
        self._call(
            operation,
            0,
            lambda c: c.create_secret(
                parent=f"projects/{self.project}",
                secret_id=secret_id,
                secret=body,
                timeout=REQUEST_TIMEOUT,
            ),
        )

    # -- SecretsBackend -----------------------------------------------------------------------

    def read_head(self) -> tuple[str, bytes] | None:
        for _ in range(READ_RACES):
            try:
                secret = self._call(
                    "get_secret",
                    0,
                    lambda c: c.get_secret(name=self.head_name, timeout=REQUEST_TIMEOUT),
                )
            except gexc.NotFound:
                return None
            except gexc.GoogleAPICallError as exc:
                raise StoreError(f"secretmanager read head: {type(exc).__name__}") from None
            current = secret.annotations.get(CURRENT_ANNOTATION)
            if not current:
                return None  # created, nothing committed yet
            try:
                return current, self._access("access_head", f"{self.head_name}/versions/{current}")
            except (gexc.NotFound, gexc.BadRequest):  # 400 FAILED_PRECONDITION: destroyed
                continue  # a commit superseded and destroyed it meanwhile: read again
            except gexc.GoogleAPICallError as exc:
                raise StoreError(f"secretmanager read head: {type(exc).__name__}") from None
        raise StoreUnavailableError(f"the head kept changing during {READ_RACES} reads")

    def write_head(self, base: str | None, content: bytes, token: str) -> str:
        try:
            if base is None:
                # created already by another process (or a crashed attempt): the cas decides
                with contextlib.suppress(gexc.Conflict):  # 409 ALREADY_EXISTS
                    self._create("create_head", self.head_name, {})
            version = self._add("add_head_version", self.head_name, content).rsplit("/", 1)[1]
            secret = self._call(
                "get_secret",
                0,
                lambda c: c.get_secret(name=self.head_name, timeout=REQUEST_TIMEOUT),
            )
            if (secret.annotations.get(CURRENT_ANNOTATION) or None) != base:
                self._destroy(version)
                raise LostRace()
            update = sm.Secret(
                name=self.head_name,
                etag=secret.etag,
                annotations={**secret.annotations, CURRENT_ANNOTATION: version},
            )
            try:
                self._call(
                    "update_secret",
                    0,
                    lambda c: c.update_secret(
                        secret=update,
                        update_mask={"paths": ["annotations"]},
                        timeout=REQUEST_TIMEOUT,
                    ),
                )
            except (gexc.Aborted, gexc.FailedPrecondition, gexc.Conflict):
                # A stale etag: another writer won, or our own update landed and its
                # answer was lost (the retry then carries the etag it replaced). Only
                # a version that is not current may be destroyed.
                if self._current_version() != version:
                    self._destroy(version)
                    raise LostRace() from None
            if base is not None:
                self._destroy(base)  # superseded: no longer billed as an active version
            return version
        except gexc.NotFound:
            raise LostRace() from None  # the head secret was deleted meanwhile
        except gexc.GoogleAPICallError as exc:
            raise StoreError(f"secretmanager write head: {type(exc).__name__}") from None

    def _current_version(self) -> str | None:
        secret = self._call(
            "get_secret", 0, lambda c: c.get_secret(name=self.head_name, timeout=REQUEST_TIMEOUT)
        )
        return secret.annotations.get(CURRENT_ANNOTATION) or None

    def _destroy(self, version: str) -> None:
        # an old version left enabled costs money, not correctness
        with contextlib.suppress(gexc.GoogleAPICallError):
            self._call(
                "destroy_version",
                0,
                lambda c: c.destroy_secret_version(
                    name=f"{self.head_name}/versions/{version}", timeout=REQUEST_TIMEOUT
                ),
            )

    def write_blob(self, name: str, content: bytes) -> None:
        secret = self.blob_name(name)
        try:
            self._create("create_blob", secret, {})
        except gexc.Conflict:  # 409 ALREADY_EXISTS (REST maps it to Conflict)
            try:  # content-addressed: the same bytes are there, unless a crash came between
                self._access("access_blob", f"{secret}/versions/latest")
                return
            except (gexc.NotFound, gexc.BadRequest):  # 400 FAILED_PRECONDITION: destroyed
                pass
            except gexc.GoogleAPICallError as exc:
                raise StoreError(f"secretmanager read blob: {type(exc).__name__}") from None
        except gexc.GoogleAPICallError as exc:
            raise StoreError(f"secretmanager create blob: {type(exc).__name__}") from None
        try:
            self._add("add_blob_version", secret, content)
        except gexc.GoogleAPICallError as exc:
            raise StoreError(f"secretmanager write blob: {type(exc).__name__}") from None

    def read_blob(self, name: str) -> bytes:
        try:
            return self._access("access_blob", f"{self.blob_name(name)}/versions/latest")
        except gexc.GoogleAPICallError as exc:
            raise StoreError(f"secretmanager read blob: {type(exc).__name__}") from None

    def delete_blob(self, name: str) -> None:
        try:
            self._call(
                "delete_blob",
                0,
                lambda c: c.delete_secret(name=self.blob_name(name), timeout=REQUEST_TIMEOUT),
            )
        except gexc.NotFound:
            return
        except gexc.GoogleAPICallError as exc:
            raise StoreError(f"secretmanager delete blob: {type(exc).__name__}") from None

    def _close_client(self) -> None:
        transport = getattr(self._client, "transport", None)
        if transport is not None:
            transport.close()

    def close(self) -> None:
        self._close_client()


def _received(result: Any) -> int:
    payload = getattr(result, "payload", None)
    return len(payload.data) if payload is not None else 0
