"""A stand-in for Google Cloud Secret Manager's documented REST API (v1), on loopback.

No Secret Manager emulator installs from the package registries this project
uses (``gcplocal`` 0.1.0 serves the routes but stores no payload: ``addVersion``
and ``access`` answer ``{"status": "ok"}``), and this machine reaches no Google
endpoint. So the tests of sealwire-store-gcp talk, through the real
google-cloud-secret-manager client over HTTP (its REST transport), to this
server, written from the public REST reference
(https://cloud.google.com/secret-manager/docs/reference/rest): the resources,
fields (proto3 JSON), etags and error statuses the store relies on:

* ``POST /v1/projects/{p}/secrets?secretId=`` (409 ALREADY_EXISTS),
  ``GET``/``PATCH`` (``updateMask``; a stale ``etag`` is 409 ABORTED; every
  update gives a new etag)/``DELETE`` (``?etag=``) ``/v1/projects/{p}/secrets/{s}``;
* ``POST .../secrets/{s}:addVersion`` (``payload.dataCrc32c`` checked: 400
  INVALID_ARGUMENT), ``GET .../versions/{v}:access`` (``latest`` too; a
  destroyed version is 400 FAILED_PRECONDITION), ``POST .../versions/{v}:destroy``;
* errors as ``{"error": {"code", "message", "status"}}``.

Whether adding a version changes the secret's etag is not documented; this
server says it does not. The store's compare-and-set reads the etag after
adding its version, so it is right either way.
"""

from __future__ import annotations

import base64
import http.server
import json
import re
import threading
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import google_crc32c

__all__ = ["SecretManagerFixture"]

_SECRET = re.compile(r"^/v1/projects/([^/]+)/secrets/([A-Za-z0-9_-]{1,255})$")
_SECRETS = re.compile(r"^/v1/projects/([^/]+)/secrets$")
_ADD = re.compile(r"^/v1/projects/([^/]+)/secrets/([A-Za-z0-9_-]+):addVersion$")
_VERSION = re.compile(
    r"^/v1/projects/([^/]+)/secrets/([A-Za-z0-9_-]+)/versions/(\w+):(access|destroy)$"
)


class _Error(Exception):
    def __init__(self, code: int, status: str, message: str) -> None:
        super().__init__(message)
        self.code, self.status, self.message = code, status, message


def _etag() -> str:
    return f'"{uuid.uuid4().hex[:16]}"'


class SecretManagerFixture:
    """The state: secrets by name, their versions; one lock (the service is linearizable)."""

    def __init__(self) -> None:
        self.secrets: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, list[dict[str, Any]]] = {}
        self.requests = 0
        self._lock = threading.Lock()
        fixture = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length) if length else b""
                if len(raw) < length:
                    # The client went away before its body came (a writer killed between
                    # the request's head and its body): the service applies nothing. Read
                    # as an empty body, a PATCH of ``annotations`` used to wipe them.
                    self.close_connection = True
                    return
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                try:
                    try:
                        body = json.loads(raw) if raw else {}
                    except ValueError:
                        raise _Error(400, "INVALID_ARGUMENT", "malformed JSON body") from None
                    with fixture._lock:
                        fixture.requests += 1
                        status, answer = 200, fixture.route(self.command, url.path, query, body)
                except _Error as err:
                    status = err.code
                    answer = {
                        "error": {"code": err.code, "message": err.message, "status": err.status}
                    }
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_DELETE = _any

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    # -- the API --------------------------------------------------------------------------

    def _secret(self, project: str, secret: str) -> dict[str, Any]:
        name = f"projects/{project}/secrets/{secret}"
        found = self.secrets.get(name)
        if found is None:
            raise _Error(404, "NOT_FOUND", f"Secret [{name}] not found.")
        return found

    def route(self, method: str, path: str, query: dict[str, str], body: dict[str, Any]) -> Any:
        if (m := _SECRETS.match(path)) and method == "POST":
            secret_id = query.get("secretId", "")
            if not re.fullmatch(r"[A-Za-z0-9_-]{1,255}", secret_id):
                raise _Error(400, "INVALID_ARGUMENT", "invalid secretId")
            name = f"projects/{m.group(1)}/secrets/{secret_id}"
            if name in self.secrets:
                raise _Error(409, "ALREADY_EXISTS", f"Secret [{name}] already exists.")
            secret = {
                "name": name,
                "replication": body.get("replication", {"automatic": {}}),
                "createTime": "2026-01-01T00:00:00Z",
                "labels": body.get("labels", {}),
                "annotations": body.get("annotations", {}),
                "etag": _etag(),
            }
            self.secrets[name] = secret
            self.versions[name] = []
            return secret
        if m := _SECRET.match(path):
            secret = self._secret(m.group(1), m.group(2))
            if method == "GET":
                return secret
            if method == "PATCH":
                etag = body.get("etag")
                if etag and etag != secret["etag"]:
                    raise _Error(409, "ABORTED", "The etag provided does not match the secret.")
                for field in query.get("updateMask", "").split(","):
                    if field in ("labels", "annotations"):
                        secret[field] = body.get(field, {})
                    elif field:
                        raise _Error(400, "INVALID_ARGUMENT", f"cannot update {field}")
                secret["etag"] = _etag()
                return secret
            if method == "DELETE":
                etag = query.get("etag")
                if etag and etag != secret["etag"]:
                    raise _Error(409, "ABORTED", "The etag provided does not match the secret.")
                del self.secrets[secret["name"]]
                del self.versions[secret["name"]]
                return {}
        if (m := _ADD.match(path)) and method == "POST":
            secret = self._secret(m.group(1), m.group(2))
            payload = body.get("payload", {})
            data = base64.b64decode(payload.get("data", ""))
            if len(data) > 64 * 1024:
                raise _Error(400, "INVALID_ARGUMENT", "Secret payload cannot exceed 65536 bytes")
            crc = payload.get("dataCrc32c")
            if crc is not None and int(crc) != google_crc32c.value(data):
                raise _Error(400, "INVALID_ARGUMENT", "Checksum mismatch")
            versions = self.versions[secret["name"]]
            version = {
                "name": f"{secret['name']}/versions/{len(versions) + 1}",
                "createTime": "2026-01-01T00:00:00Z",
                "state": "ENABLED",
                "etag": _etag(),
                "clientSpecifiedPayloadChecksum": crc is not None,
            }
            versions.append({**version, "data": data})
            return version
        if (m := _VERSION.match(path)) and method in ("GET", "POST"):
            secret = self._secret(m.group(1), m.group(2))
            versions = self.versions[secret["name"]]
            wanted = m.group(3)
            if wanted == "latest":
                live = [v for v in versions if v["state"] == "ENABLED"]
                if not live:
                    raise _Error(404, "NOT_FOUND", "no enabled version")
                version = live[-1]
            elif wanted.isdigit() and 1 <= int(wanted) <= len(versions):
                version = versions[int(wanted) - 1]
            else:
                raise _Error(404, "NOT_FOUND", f"Secret Version [{wanted}] not found.")
            public = {k: v for k, v in version.items() if k != "data"}
            if m.group(4) == "destroy":
                etag = body.get("etag")
                if etag and etag != version["etag"]:
                    raise _Error(409, "ABORTED", "The etag provided does not match.")
                version["state"] = "DESTROYED"
                version["data"] = b""
                version["etag"] = _etag()
                return {**public, "state": "DESTROYED", "etag": version["etag"]}
            if version["state"] != "ENABLED":
                raise _Error(
                    400, "FAILED_PRECONDITION", f"{version['name']} is in {version['state']} state."
                )
            return {
                "name": version["name"],
                "payload": {
                    "data": base64.b64encode(version["data"]).decode(),
                    "dataCrc32c": str(google_crc32c.value(version["data"])),
                },
            }
        raise _Error(404, "NOT_FOUND", f"no route {method} {path}")
