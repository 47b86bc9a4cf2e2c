"""HashiCorp Vault / OpenBao KV version 2 as a :class:`sealwire.store.SecretsBackend` (hvac).

Secrets, under the configured KV v2 ``mount`` and ``prefix``: ``<prefix>/head``
(``{"v": <base64 of the sealed head>}``, one KV version per commit) and
``<prefix>/blob/<sha256>`` (sealed chunks of large values, created once,
deleted with all their versions when no head names them).

Compare-and-set: every write carries KV v2's ``cas`` option: ``cas=0`` creates
only if absent, ``cas=N`` writes only if the current version is ``N``; Vault
answers 400 "check-and-set parameter did not match" otherwise: a lost race.

Faults: 429 (rate limited), 500/502/503 (sealed, standby, down) and an
unreachable server are retried at most ``attempts`` times with exponential
backoff, then :class:`StoreThrottledError` / :class:`StoreUnavailableError`;
403 (token expired or revoked) gets one retry with a fresh client, whose token
is read again (from ``token_file``, where a Vault Agent renews it, or
``$VAULT_TOKEN``), then :class:`StoreCredentialsError`.
"""

from __future__ import annotations

import base64
import random
import time
from collections.abc import Callable
from typing import Any

import hvac
import hvac.exceptions as hvac_errors
import requests

from sealwire.store import (
    CallCounter,
    LostRace,
    StoreCredentialsError,
    StoreError,
    StoreThrottledError,
    StoreUnavailableError,
)
from sealwire_store_vault._options import DEFAULT_ATTEMPTS, DEFAULT_BACKOFF

__all__ = [
    "POLICY_TEMPLATE",
    "BACKOFF_MAX",
    "DEFAULT_ATTEMPTS",
    "DEFAULT_BACKOFF",
    "REQUEST_TIMEOUT",
    "VaultSecretsBackend",
]

BACKOFF_MAX = 2.0
"""Seconds between two retries at most."""
REQUEST_TIMEOUT = 10.0
"""Seconds for one HTTP call (a KV read or write of 64 KiB takes milliseconds)."""

_CAS_MISMATCH = "check-and-set parameter did not match"

POLICY_TEMPLATE = """\
# Sealwire agent state under {mount}/{prefix}: least privilege.
path "{mount}/data/{prefix}/*" {{
  capabilities = ["create", "read", "update"]
}}
path "{mount}/metadata/{prefix}/blob/*" {{
  capabilities = ["delete"]
}}
"""
"""The Vault/OpenBao policy an agent's token needs (``.format(mount=..., prefix=...)``):
read and write (with ``cas``) its own paths, delete its own unused blobs; nothing else."""


class VaultSecretsBackend:
    """Head and blobs of one agent in a KV v2 mount."""

    def __init__(
        self,
        client_factory: Callable[[], hvac.Client],
        prefix: str,
        *,
        mount: str = "secret",
        attempts: int = DEFAULT_ATTEMPTS,
        backoff: float = DEFAULT_BACKOFF,
        counter: CallCounter | None = None,
    ) -> None:
        if attempts < 1:
            raise StoreError("attempts must be 1 or more")
        self._factory = client_factory
        self._client = client_factory()
        self.prefix = prefix.strip("/")
        self.mount = mount.strip("/")
        self._attempts = attempts
        self._backoff = backoff
        self.counter = counter or CallCounter()

    @property
    def head_path(self) -> str:
        return f"{self.prefix}/head"

    def blob_path(self, name: str) -> str:
        return f"{self.prefix}/blob/{name}"

    def _call(self, operation: str, sent: int, fn: Callable[[hvac.Client], Any]) -> Any:
        """One API call with the bounded, typed retries of this module's docstring."""
        refreshed = False
        last: StoreError = StoreUnavailableError(f"vault {operation}: no attempt made")
        attempt = 0
        while attempt < self._attempts:
            attempt += 1
            try:
                result = fn(self._client)
            except hvac_errors.RateLimitExceeded:
                self.counter.count(operation, sent)
                last = StoreThrottledError(f"vault {operation}: rate limited {attempt} times")
            except (hvac_errors.Forbidden, hvac_errors.Unauthorized):
                self.counter.count(operation, sent)
                if refreshed:
                    raise StoreCredentialsError(
                        f"vault {operation}: permission denied (token expired, revoked, or "
                        "missing a policy)"
                    ) from None
                refreshed = True
                attempt -= 1  # a fresh token is not a retry of the fault
                self._client.adapter.close()
                self._client = self._factory()
                continue
            except (
                hvac_errors.VaultDown,
                hvac_errors.InternalServerError,
                hvac_errors.BadGateway,
            ) as exc:
                self.counter.count(operation, sent)
                last = StoreUnavailableError(f"vault {operation}: {type(exc).__name__}")
            except (requests.ConnectionError, requests.Timeout) as exc:
                self.counter.count(operation, sent)
                last = StoreUnavailableError(
                    f"vault {operation}: unreachable ({type(exc).__name__})"
                )
            except hvac_errors.VaultError:
                self.counter.count(operation, sent)  # answered: the caller decides (cas, 404)
                raise
            else:
                self.counter.count(operation, sent, _received(result))
                return result
            if attempt < self._attempts:
                delay = min(BACKOFF_MAX, self._backoff * 2 ** (attempt - 1))
                time.sleep(delay * random.uniform(0.5, 1.0))
        raise last

    def _read(self, operation: str, path: str) -> tuple[str, bytes] | None:
        try:
            result = self._call(
                operation,
                0,
                lambda c: c.secrets.kv.v2.read_secret_version(
                    path=path, mount_point=self.mount, raise_on_deleted_version=False
                ),
            )
        except hvac_errors.InvalidPath:
            return None
        except hvac_errors.VaultError as exc:
            raise StoreError(f"vault read: {type(exc).__name__}") from None
        data = result.get("data") or {}
        value = (data.get("data") or {}).get("v")
        if not isinstance(value, str):
            return None  # the newest version was deleted
        version = str(data["metadata"]["version"])
        try:
            return version, base64.b64decode(value, validate=True)
        except ValueError:
            raise StoreError("vault holds a value that is not a Sealwire state") from None

    def _write(self, operation: str, path: str, content: bytes, cas: int) -> str:
        secret = {"v": base64.b64encode(content).decode("ascii")}
        try:
            result = self._call(
                operation,
                len(content),
                lambda c: c.secrets.kv.v2.create_or_update_secret(
                    path=path, secret=secret, cas=cas, mount_point=self.mount
                ),
            )
        except hvac_errors.InvalidRequest as exc:
            if _CAS_MISMATCH in str(exc):
                raise LostRace() from None
            raise StoreError(f"vault write: {type(exc).__name__}") from None
        except hvac_errors.VaultError as exc:
            raise StoreError(f"vault write: {type(exc).__name__}") from None
        return str(result["data"]["version"])

    # -- SecretsBackend -----------------------------------------------------------------------

    def read_head(self) -> tuple[str, bytes] | None:
        return self._read("read_head", self.head_path)

    def write_head(self, base: str | None, content: bytes, token: str) -> str:
        return self._write("write_head", self.head_path, content, 0 if base is None else int(base))

    def write_blob(self, name: str, content: bytes) -> None:
        try:
            self._write("write_blob", self.blob_path(name), content, 0)
        except LostRace:
            return  # content-addressed: the same bytes are there already

    def read_blob(self, name: str) -> bytes:
        found = self._read("read_blob", self.blob_path(name))
        if found is None:
            raise StoreError("a blob the head names is missing from vault")
        return found[1]

    def delete_blob(self, name: str) -> None:
        try:
            self._call(
                "delete_blob",
                0,
                lambda c: c.secrets.kv.v2.delete_metadata_and_all_versions(
                    path=self.blob_path(name), mount_point=self.mount
                ),
            )
        except hvac_errors.InvalidPath:
            return
        except hvac_errors.VaultError as exc:
            raise StoreError(f"vault delete: {type(exc).__name__}") from None

    def close(self) -> None:
        self._client.adapter.close()


def _received(result: Any) -> int:
    if isinstance(result, dict):
        value = ((result.get("data") or {}).get("data") or {}).get("v")
        if isinstance(value, str):
            return len(value) * 3 // 4
    return 0
