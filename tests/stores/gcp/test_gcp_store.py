"""sealwire-store-gcp against the Secret Manager REST fixture: the managed store suite
(races, the head behind the agent's back, batching, faults, kill -9), then what is
Secret Manager's own."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from sealwire.store import INLINE_MAX, ManagedStore, StoreCredentialsError, StoreKey
from sealwire.testing.managed_store_contract import Fault, ManagedStoreContract
from sealwire_store_gcp import CURRENT_ANNOTATION, make_client, open_gcp_store

KEY = StoreKey.generate()


def _point_head_at(raw: Any, prefix: str, content: bytes) -> None:
    """What an operator could do by hand: add a version and make it the current one."""
    head = f"projects/test/secrets/{prefix}-head"
    version = raw.add_secret_version(parent=head, payload={"data": content}).name
    secret = raw.get_secret(name=head)
    annotations = {**secret.annotations, CURRENT_ANNOTATION: version.rsplit("/", 1)[1]}
    raw.update_secret(
        secret={"name": head, "annotations": annotations}, update_mask={"paths": ["annotations"]}
    )


class TestGcpManaged(ManagedStoreContract):
    opener = "sealwire_store_gcp:open_gcp_store"

    @pytest.fixture
    def manager_url(self, gcp_url: str) -> str:
        return gcp_url

    def prefix_for(self, digest: str) -> str:
        return f"t-{digest[:16]}"  # Secret Manager names: letters, digits, - and _

    def store_options(self, url: str, prefix: str) -> dict[str, str]:
        return {"project": "test", "prefix": prefix, "endpoint": url, "anonymous": "true"}

    def read_head(self, prefix: str) -> bytes:
        client = make_client(endpoint=self.url, anonymous=True)
        try:
            head = f"projects/test/secrets/{prefix}-head"
            current = client.get_secret(name=head).annotations[CURRENT_ANNOTATION]
            return bytes(
                client.access_secret_version(name=f"{head}/versions/{current}").payload.data
            )
        finally:
            client.transport.close()

    def write_head(self, prefix: str, data: bytes) -> None:
        client = make_client(endpoint=self.url, anonymous=True)
        try:
            _point_head_at(client, prefix, data)
        finally:
            client.transport.close()

    def fault_answer(self, fault: Fault) -> tuple[int, bytes]:
        code, status = (429, "RESOURCE_EXHAUSTED") if fault == "throttled" else (503, "UNAVAILABLE")
        return code, json.dumps(
            {"error": {"code": code, "message": "x", "status": status}}
        ).encode()


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    return "t-" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:16]


def open_at(
    url: str, prefix: str, home: Path, cache: str = "cache.db", **extra: str
) -> ManagedStore:
    options = {
        "project": "test",
        "prefix": prefix,
        "endpoint": url,
        "anonymous": "true",
        "cache": cache,
        "retry_backoff": "0.01",
        **extra,
    }
    return open_gcp_store(options, KEY, home)


def test_a_ratchet_step_is_one_etag_checked_commit(
    gcp_url: str, prefix: str, tmp_path: Path
) -> None:
    with open_at(gcp_url, prefix, tmp_path) as store:
        store.put("ratchet", "peer", b"s0")
        before = dict(store.counter.calls)
        with store.transaction() as txn:
            txn.put("ratchet", "peer", b"s1" * 100)
        calls = {k: v - before.get(k, 0) for k, v in store.counter.calls.items()}
        assert {k: v for k, v in calls.items() if v} == {
            "add_head_version": 1,
            "get_secret": 1,
            "update_secret": 1,
            "destroy_version": 1,  # the superseded version: no longer billed
        }
        big = os.urandom(INLINE_MAX * 3)
        store.put("groups", "g", big)
        before = dict(store.counter.calls)
        store.put("groups", "g", big[::-1])
        calls = {k: v - before.get(k, 0) for k, v in store.counter.calls.items()}
        assert calls["create_blob"] == calls["add_blob_version"] == calls["delete_blob"] == 1
    with open_at(gcp_url, prefix, tmp_path) as again:  # the cache holds the blob
        assert again.get("groups", "g") == big[::-1]
        assert again.counter.calls == {"get_secret": 1, "access_head": 1}
    with open_at(gcp_url, prefix, tmp_path, cache="other.db") as fresh:  # a new host
        assert fresh.get("groups", "g") == big[::-1]
        assert fresh.counter.calls == {"get_secret": 1, "access_head": 1, "access_blob": 1}


def test_a_lost_race_costs_one_more_version(gcp_url: str, prefix: str, tmp_path: Path) -> None:
    with (
        open_at(gcp_url, prefix, tmp_path, "a.db") as a,
        open_at(gcp_url, prefix, tmp_path, "b.db") as b,
    ):
        a.put("ratchet", "peer-1", b"a1")
        b.put("ratchet", "peer-2", b"b1")
        a.put("ratchet", "peer-1", b"a2")
        updates = b.counter.calls["update_secret"]
        added = b.counter.calls["add_head_version"]
        b.put("ratchet", "peer-2", b"b2")
        assert b.counter.calls["add_head_version"] == added + 2  # lost, won
        assert b.counter.calls["update_secret"] == updates + 1  # the lost one saw it first


def test_refused_credentials_get_one_fresh_client_then_a_typed_error(
    fault_proxy: Any, prefix: str, tmp_path: Path
) -> None:
    with open_at(fault_proxy.url, prefix, tmp_path) as store:
        fault_proxy.fail_gcp(401, "UNAUTHENTICATED", times=1)
        store.put("ns", "k", b"v")
        fault_proxy.fail_gcp(403, "PERMISSION_DENIED", times=-1)
        before = fault_proxy.requests
        with pytest.raises(StoreCredentialsError):
            store.put("ns", "k", b"w")
        assert fault_proxy.requests - before == 2


def test_the_stand_in_applies_nothing_of_a_request_whose_body_never_came(
    gcp_url: str, prefix: str
) -> None:
    """A writer killed between a PATCH's head and its body (the kill -9 test does that
    at random): Secret Manager applies nothing. The stand-in read the missing body as
    ``{}`` and wiped the head's annotations, so the store found no current head."""
    client = make_client(endpoint=gcp_url, anonymous=True)
    head = f"projects/test/secrets/{prefix}-head"
    try:
        client.create_secret(
            parent="projects/test",
            secret_id=f"{prefix}-head",
            secret={"replication": {"automatic": {}}, "annotations": {CURRENT_ANNOTATION: "1"}},
        )
        host, port = gcp_url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as cut:
            cut.sendall(
                f"PATCH /v1/{head}?updateMask=annotations HTTP/1.1\r\nHost: {host}\r\n"
                "Content-Type: application/json\r\nContent-Length: 120\r\n\r\n".encode()
            )
        with socket.create_connection((host, int(port))) as garbled:  # a body, not JSON
            garbled.sendall(
                f"PATCH /v1/{head}?updateMask=annotations HTTP/1.1\r\nHost: {host}\r\n"
                "Content-Length: 3\r\nConnection: close\r\n\r\n{x!".encode()
            )
            assert garbled.recv(1024).split(b"\r\n", 1)[0].split()[1] == b"400"
        assert dict(client.get_secret(name=head).annotations) == {CURRENT_ANNOTATION: "1"}
    finally:
        client.transport.close()
