"""sealwire-store-vault against a real OpenBao server: the managed store suite (races, the
head behind the agent's back, batching, faults, kill -9), then what is Vault's own."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import hvac
import pytest

from sealwire.store import INLINE_MAX, ManagedStore, StoreCredentialsError, StoreKey
from sealwire.testing.managed_store_contract import Fault, ManagedStoreContract
from sealwire_store_vault import POLICY_TEMPLATE, open_vault_store

KEY = StoreKey.generate()
ROOT_TOKEN = "root"  # the dev server's (conftest.py starts it with -dev-root-token-id)


class TestVaultManaged(ManagedStoreContract):
    opener = "sealwire_store_vault:open_vault_store"

    @pytest.fixture
    def manager_url(self, vault_url: str) -> str:
        return vault_url

    def store_options(self, url: str, prefix: str) -> dict[str, str]:
        return {"url": url, "prefix": prefix}

    def read_head(self, prefix: str) -> bytes:
        client = hvac.Client(url=self.url, token=ROOT_TOKEN)
        try:
            answer = client.secrets.kv.v2.read_secret_version(
                path=f"{prefix}/head", raise_on_deleted_version=True
            )
            return base64.b64decode(answer["data"]["data"]["v"])
        finally:
            client.adapter.close()

    def write_head(self, prefix: str, data: bytes) -> None:
        client = hvac.Client(url=self.url, token=ROOT_TOKEN)
        try:
            secret = {"v": base64.b64encode(data).decode()}
            client.secrets.kv.v2.create_or_update_secret(path=f"{prefix}/head", secret=secret)
        finally:
            client.adapter.close()

    def fault_answer(self, fault: Fault) -> tuple[int, bytes]:
        status = 429 if fault == "throttled" else 503  # rate limited; sealed
        return status, json.dumps({"errors": ["injected"]}).encode()

    def writer_env(self) -> dict[str, str]:
        return {"VAULT_TOKEN": ROOT_TOKEN}


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    return "t/" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:16]


@pytest.fixture
def raw(vault_url: str) -> Iterator[hvac.Client]:
    client = hvac.Client(url=vault_url, token=ROOT_TOKEN)
    yield client
    client.adapter.close()


def open_at(
    url: str, prefix: str, home: Path, cache: str = "cache.db", **extra: str
) -> ManagedStore:
    options = {"url": url, "prefix": prefix, "cache": cache, "retry_backoff": "0.01", **extra}
    return open_vault_store(options, KEY, home)


def test_a_ratchet_step_is_one_cas_write(vault_url: str, prefix: str, tmp_path: Path) -> None:
    with open_at(vault_url, prefix, tmp_path) as store:
        store.put("ratchet", "peer", b"s0")
        before = dict(store.counter.calls)
        with store.transaction() as txn:
            txn.put("ratchet", "peer", b"s1" * 100)
        calls = {k: v - before.get(k, 0) for k, v in store.counter.calls.items()}
        assert {k: v for k, v in calls.items() if v} == {"write_head": 1}
        big = os.urandom(INLINE_MAX * 3)
        store.put("groups", "g", big)
        before = dict(store.counter.calls)
        store.put("groups", "g", big[::-1])  # a new epoch: one blob in, the old one out
        calls = {k: v - before.get(k, 0) for k, v in store.counter.calls.items()}
        assert {k: v for k, v in calls.items() if v} == {
            "write_blob": 1,
            "write_head": 1,
            "delete_blob": 1,
        }
    with open_at(vault_url, prefix, tmp_path) as again:  # the cache holds the blob
        assert again.get("groups", "g") == big[::-1]
        assert again.counter.calls == {"read_head": 1}
    with open_at(vault_url, prefix, tmp_path, cache="other.db") as fresh:  # a new host
        assert fresh.get("groups", "g") == big[::-1]
        assert fresh.counter.calls == {"read_head": 1, "read_blob": 1}


def test_a_lost_race_costs_one_more_cas_write(vault_url: str, prefix: str, tmp_path: Path) -> None:
    with (
        open_at(vault_url, prefix, tmp_path, "a.db") as a,
        open_at(vault_url, prefix, tmp_path, "b.db") as b,
    ):
        a.put("ratchet", "peer-1", b"a1")
        b.put("ratchet", "peer-2", b"b1")
        a.put("ratchet", "peer-1", b"a2")
        writes = b.counter.calls["write_head"]
        b.put("ratchet", "peer-2", b"b2")
        assert b.counter.calls["write_head"] == writes + 2  # lost (cas), won


def test_a_revoked_token_is_read_again_from_its_file(
    vault_url: str, prefix: str, tmp_path: Path, raw: hvac.Client
) -> None:
    """A real 403: the token in token_file is revoked; the store reads the file again
    (where a Vault Agent would have put a new token) and goes on; with no new token
    it is a StoreCredentialsError."""
    first = raw.auth.token.create(policies=["root"], ttl="1h")["auth"]["client_token"]
    token_file = tmp_path / "token"
    token_file.write_text(first)
    with open_at(vault_url, prefix, tmp_path, token_file="token") as store:
        store.put("ns", "k", b"v1")
        raw.auth.token.revoke(first)
        second = raw.auth.token.create(policies=["root"], ttl="1h")["auth"]["client_token"]
        token_file.write_text(second)
        store.put("ns", "k", b"v2")
        raw.auth.token.revoke(second)
        with pytest.raises(StoreCredentialsError):
            store.put("ns", "k", b"v3")
    with open_at(vault_url, prefix, tmp_path, cache="witness.db") as witness:
        assert witness.get("ns", "k") == b"v2"


def test_the_documented_least_privilege_policy_is_enough(
    vault_url: str, prefix: str, tmp_path: Path, raw: hvac.Client
) -> None:
    """A token holding only POLICY_TEMPLATE (as docs/stores/vault.md prints it) runs the
    store, blobs included, and is refused outside its prefix."""
    raw.sys.create_or_update_policy(
        name="sealwire-test", policy=POLICY_TEMPLATE.format(mount="secret", prefix=prefix)
    )
    token = raw.auth.token.create(policies=["sealwire-test"], ttl="1h")["auth"]["client_token"]
    (tmp_path / "token").write_text(token)
    big = os.urandom(INLINE_MAX * 2)
    with open_at(vault_url, prefix, tmp_path, token_file="token") as store:
        store.put("groups", "g", big)
        store.put("groups", "g", big[::-1])  # deletes the first blob
        store.put("ratchet", "peer", b"s1")
        assert store.counter.calls["delete_blob"] == 1
    blobs = raw.secrets.kv.v2.list_secrets(path=f"{prefix}/blob")["data"]["keys"]
    assert len(blobs) == 1  # the unused blob was really deleted, with the policy's rights
    with open_at(vault_url, prefix, tmp_path, cache="fresh.db", token_file="token") as again:
        assert again.get("groups", "g") == big[::-1]
    with pytest.raises(StoreCredentialsError):
        open_at(vault_url, "elsewhere/agent", tmp_path, cache="x.db", token_file="token")
