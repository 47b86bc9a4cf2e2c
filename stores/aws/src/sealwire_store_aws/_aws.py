"""AWS Secrets Manager as a :class:`sealwire.store.SecretsBackend` (boto3).

Secrets, under the configured ``prefix``: ``<prefix>/head`` (the sealed
manifest, one version per commit) and ``<prefix>/blob/<sha256>`` (sealed
chunks of large values, written once, deleted when no head names them).

Compare-and-set: a commit puts a new version of the head labelled
``SEALWIRE_PENDING`` (its ClientRequestToken is the new version id, so a retried
call is idempotent), then moves ``AWSCURRENT`` onto it with
``UpdateSecretVersionStage(RemoveFromVersionId=<the version read>)``, which AWS
refuses when ``AWSCURRENT`` is on another version by then: a lost race.

Faults: throttling (``ThrottlingException``...), an unreachable endpoint and
server errors are retried at most ``attempts`` times with exponential backoff,
then :class:`StoreThrottledError` / :class:`StoreUnavailableError`; refused
credentials (expired, invalid) get one retry with a fresh client (boto3 then
reloads them from its chain), then :class:`StoreCredentialsError`.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from sealwire.store import (
    CallCounter,
    LostRace,
    StoreCredentialsError,
    StoreError,
    StoreThrottledError,
    StoreUnavailableError,
)
from sealwire_store_aws._options import DEFAULT_ATTEMPTS, DEFAULT_BACKOFF

__all__ = [
    "BACKOFF_MAX",
    "CONNECT_TIMEOUT",
    "DEFAULT_ATTEMPTS",
    "DEFAULT_BACKOFF",
    "PENDING_STAGE",
    "READ_TIMEOUT",
    "AwsSecretsBackend",
    "make_client",
]

PENDING_STAGE = "SEALWIRE_PENDING"
BACKOFF_MAX = 2.0
"""Seconds between two retries at most."""
CONNECT_TIMEOUT = 5.0
"""Seconds to connect to the endpoint (a regional endpoint answers in milliseconds)."""
READ_TIMEOUT = 10.0
"""Seconds to wait for an answer (a 64 KiB secret is read in well under a second)."""

_THROTTLED = frozenset(
    {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"}
)
_CREDENTIALS = frozenset(
    {
        "ExpiredTokenException",
        "ExpiredToken",
        "RequestExpired",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "AccessDeniedException",
        "SignatureDoesNotMatch",
    }
)
_UNAVAILABLE = frozenset({"InternalServiceError", "ServiceUnavailable", "InternalFailure"})
_NETWORK = (EndpointConnectionError, ConnectionClosedError, ReadTimeoutError, ConnectTimeoutError)


def make_client(*, region: str, endpoint_url: str | None = None, profile: str | None = None) -> Any:
    """A Secrets Manager client with botocore's own retries off (ours are bounded and typed)."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(profile_name=profile, region_name=region)
    return session.client(
        "secretsmanager",
        endpoint_url=endpoint_url,
        config=Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=READ_TIMEOUT,
        ),
    )


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class AwsSecretsBackend:
    """Head and blobs of one agent in AWS Secrets Manager."""

    def __init__(
        self,
        client_factory: Callable[[], Any],
        prefix: str,
        *,
        attempts: int = DEFAULT_ATTEMPTS,
        backoff: float = DEFAULT_BACKOFF,
        counter: CallCounter | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        if attempts < 1:
            raise StoreError("attempts must be 1 or more")
        self._factory = client_factory
        self._client = client_factory()
        self.prefix = prefix.rstrip("/")
        self._attempts = attempts
        self._backoff = backoff
        self.counter = counter or CallCounter()
        self._tags = [{"Key": k, "Value": v} for k, v in (tags or {}).items()]

    @property
    def head_name(self) -> str:
        return f"{self.prefix}/head"

    def blob_name(self, name: str) -> str:
        return f"{self.prefix}/blob/{name}"

    def _call(self, operation: str, sent: int = 0, **kwargs: Any) -> dict[str, Any]:
        """One API call with the bounded, typed retries of this module's docstring."""
        refreshed = False
        last: StoreError = StoreUnavailableError(f"secretsmanager {operation}: no attempt made")
        attempt = 0
        while attempt < self._attempts:
            attempt += 1
            try:
                result: dict[str, Any] = getattr(self._client, operation)(**kwargs)
            except ClientError as exc:
                self.counter.count(operation, sent)
                code = _code(exc)
                status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
                if code in _THROTTLED:
                    last = StoreThrottledError(
                        f"secretsmanager {operation}: throttled ({code}) {attempt} times"
                    )
                elif code in _CREDENTIALS:
                    if refreshed:
                        raise StoreCredentialsError(
                            f"secretsmanager {operation}: credentials refused ({code})"
                        ) from None
                    refreshed = True
                    attempt -= 1  # a fresh client is not a retry of the fault
                    self._client.close()
                    self._client = self._factory()
                    continue
                elif code in _UNAVAILABLE or status >= 500:
                    last = StoreUnavailableError(f"secretsmanager {operation}: {code or status}")
                else:
                    raise
            except NoCredentialsError:
                raise StoreCredentialsError(
                    f"secretsmanager {operation}: no AWS credentials found"
                ) from None
            except _NETWORK as exc:
                self.counter.count(operation, sent)
                last = StoreUnavailableError(
                    f"secretsmanager {operation}: unreachable ({type(exc).__name__})"
                )
            except BotoCoreError as exc:
                raise StoreError(f"secretsmanager {operation}: {type(exc).__name__}") from None
            else:
                self.counter.count(operation, sent, _received(result))
                return result
            if attempt < self._attempts:
                delay = min(BACKOFF_MAX, self._backoff * 2 ** (attempt - 1))
                time.sleep(delay * random.uniform(0.5, 1.0))
        raise last

    # -- SecretsBackend -----------------------------------------------------------------------

    def read_head(self) -> tuple[str, bytes] | None:
        try:
            result = self._call(
                "get_secret_value", SecretId=self.head_name, VersionStage="AWSCURRENT"
            )
        except ClientError as exc:
            if _code(exc) == "ResourceNotFoundException":
                return None
            raise _other(exc, "get_secret_value") from None
        return str(result["VersionId"]), bytes(result["SecretBinary"])

    def write_head(self, base: str | None, content: bytes, token: str) -> str:
        try:
            if base is None:
                created = self._call(
                    "create_secret",
                    sent=len(content),
                    Name=self.head_name,
                    SecretBinary=content,
                    ClientRequestToken=token,
                    Description="Sealwire agent state (sealed): do not edit",
                    Tags=self._tags,
                )
                return str(created["VersionId"])
            put = self._call(
                "put_secret_value",
                sent=len(content),
                SecretId=self.head_name,
                SecretBinary=content,
                ClientRequestToken=token,
                VersionStages=[PENDING_STAGE],
            )
            self._call(
                "update_secret_version_stage",
                SecretId=self.head_name,
                VersionStage="AWSCURRENT",
                MoveToVersionId=str(put["VersionId"]),
                RemoveFromVersionId=base,
            )
            return str(put["VersionId"])
        except ClientError as exc:
            if _code(exc) in ("ResourceExistsException", "InvalidParameterException"):
                raise LostRace() from None
            if _code(exc) == "ResourceNotFoundException":  # the head was deleted meanwhile
                raise LostRace() from None
            raise _other(exc, "write head") from None

    def write_blob(self, name: str, content: bytes) -> None:
        token = str(uuid.uuid5(uuid.NAMESPACE_URL, f"sealwire-blob:{name}"))
        try:
            self._call(
                "create_secret",
                sent=len(content),
                Name=self.blob_name(name),
                SecretBinary=content,
                ClientRequestToken=token,
                Description="Sealwire agent state, a sealed chunk: do not edit",
                Tags=self._tags,
            )
        except ClientError as exc:
            if _code(exc) == "ResourceExistsException":
                return  # content-addressed: the same bytes are there already
            raise _other(exc, "create blob") from None

    def read_blob(self, name: str) -> bytes:
        try:
            result = self._call("get_secret_value", SecretId=self.blob_name(name))
        except ClientError as exc:
            raise _other(exc, "read blob") from None
        return bytes(result["SecretBinary"])

    def delete_blob(self, name: str) -> None:
        try:
            self._call(
                "delete_secret", SecretId=self.blob_name(name), ForceDeleteWithoutRecovery=True
            )
        except ClientError as exc:
            if _code(exc) != "ResourceNotFoundException":
                raise _other(exc, "delete blob") from None

    def close(self) -> None:
        self._client.close()


def _received(result: dict[str, Any]) -> int:
    value = result.get("SecretBinary")
    return len(value) if isinstance(value, bytes | bytearray) else 0


def _other(exc: ClientError, what: str) -> StoreError:
    return StoreError(f"secretsmanager {what}: {_code(exc) or 'error'}")
