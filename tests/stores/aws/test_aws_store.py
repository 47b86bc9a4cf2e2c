"""sealwire-store-aws against moto in server mode: the managed store suite (races, the
head behind the agent's back, batching, faults, kill -9), then what is AWS's own."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import boto3
import pytest

from sealwire.store import (
    INLINE_MAX,
    ManagedStore,
    StoreCredentialsError,
    StoreKey,
)
from sealwire.testing.managed_store_contract import Fault, ManagedStoreContract
from sealwire_store_aws import open_aws_store

KEY = StoreKey.generate()
REGION = "us-east-1"


def _client(url: str) -> Any:
    return boto3.client("secretsmanager", endpoint_url=url, region_name=REGION)


class TestAwsManaged(ManagedStoreContract):
    opener = "sealwire_store_aws:open_aws_store"
    fault_content_type = "application/x-amz-json-1.1"

    @pytest.fixture
    def manager_url(self, moto_url: str) -> str:
        return moto_url

    def store_options(self, url: str, prefix: str) -> dict[str, str]:
        return {"prefix": prefix, "region": REGION, "endpoint_url": url}

    def read_head(self, prefix: str) -> bytes:
        client = _client(self.url)
        try:
            answer = client.get_secret_value(SecretId=f"{prefix}/head", VersionStage="AWSCURRENT")
            return bytes(answer["SecretBinary"])
        finally:
            client.close()

    def write_head(self, prefix: str, data: bytes) -> None:
        """A new version, then AWSCURRENT moved onto it. (A plain put_secret_value is
        not enough on moto: it leaves AWSCURRENT on the old version too when that one
        carries another stage, as the store's own versions do.)"""
        client = _client(self.url)
        head = f"{prefix}/head"
        try:
            current = client.get_secret_value(SecretId=head, VersionStage="AWSCURRENT")
            added = client.put_secret_value(
                SecretId=head, SecretBinary=data, VersionStages=["sealwire-test"]
            )
            client.update_secret_version_stage(
                SecretId=head,
                VersionStage="AWSCURRENT",
                MoveToVersionId=added["VersionId"],
                RemoveFromVersionId=current["VersionId"],
            )
        finally:
            client.close()

    def fault_answer(self, fault: Fault) -> tuple[int, bytes]:
        if fault == "throttled":
            return 400, json.dumps({"__type": "ThrottlingException", "message": "x"}).encode()
        return 500, json.dumps({"__type": "InternalServiceError", "message": "x"}).encode()


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    return "t/" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:16]


def open_at(
    url: str, prefix: str, home: Path, cache: str = "cache.db", **extra: str
) -> ManagedStore:
    options = {
        "prefix": prefix,
        "region": REGION,
        "endpoint_url": url,
        "cache": cache,
        "retry_backoff": "0.01",
        **extra,
    }
    return open_aws_store(options, KEY, home)


def test_a_ratchet_step_is_one_compare_and_set(moto_url: str, prefix: str, tmp_path: Path) -> None:
    with open_at(moto_url, prefix, tmp_path) as store:
        store.put("ratchet", "peer", b"s0")
        before = dict(store.counter.calls)
        with store.transaction() as txn:
            txn.put("ratchet", "peer", b"s1" * 100)
        calls = {k: v - before.get(k, 0) for k, v in store.counter.calls.items()}
        assert {k: v for k, v in calls.items() if v} == {
            "put_secret_value": 1,
            "update_secret_version_stage": 1,
        }
        big = os.urandom(INLINE_MAX * 3)
        before = dict(store.counter.calls)
        store.put("groups", "g", big)  # a group state: written once as a blob
        store.put("ratchet", "peer", b"s2")  # the next step does not rewrite the blob
        calls = {k: v - before.get(k, 0) for k, v in store.counter.calls.items()}
        assert calls.get("create_secret") == 1
    with open_at(moto_url, prefix, tmp_path) as again:  # the cache holds the blob
        assert again.get("groups", "g") == big
        assert again.counter.calls == {"get_secret_value": 1}
    with open_at(moto_url, prefix, tmp_path, cache="other.db") as fresh:  # a new host
        assert fresh.get("groups", "g") == big
        assert fresh.counter.calls == {"get_secret_value": 2}


def test_a_lost_race_costs_one_more_stage_move(moto_url: str, prefix: str, tmp_path: Path) -> None:
    with (
        open_at(moto_url, prefix, tmp_path, "a.db") as a,
        open_at(moto_url, prefix, tmp_path, "b.db") as b,
    ):
        a.put("ratchet", "peer-1", b"a1")
        b.put("ratchet", "peer-2", b"b1")
        a.put("ratchet", "peer-1", b"a2")
        stage_moves = b.counter.calls.get("update_secret_version_stage", 0)
        b.put("ratchet", "peer-2", b"b2")
        assert b.counter.calls["update_secret_version_stage"] == stage_moves + 2  # lost, won


def test_expired_credentials_get_one_fresh_client_then_a_typed_error(
    fault_proxy: Any, prefix: str, tmp_path: Path
) -> None:
    with open_at(fault_proxy.url, prefix, tmp_path) as store:
        fault_proxy.fail_aws("ExpiredTokenException", times=1)
        store.put("ns", "k", b"v")  # refreshed once, then through
        fault_proxy.fail_aws("ExpiredTokenException", times=-1)
        before = fault_proxy.requests
        with pytest.raises(StoreCredentialsError):
            store.put("ns", "k", b"w")
        assert fault_proxy.requests - before == 2


def test_an_unreachable_manager_leaves_only_the_cache(prefix: str, tmp_path: Path) -> None:
    from ports import free_port

    from sealwire.store import StoreUnavailableError

    url = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    with pytest.raises(StoreUnavailableError):
        open_at(url, prefix, tmp_path, retries="2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.db"]
