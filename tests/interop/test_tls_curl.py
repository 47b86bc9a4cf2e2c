"""``curl`` (OpenSSL) calls a Sealwire agent over the TLS binding with a client certificate.

curl verifies the agent's certificate with it as the CA file (its IP address
is in the certificate) and with ``--pinnedpubkey`` (the RFC 7469 pin the card
publishes); the agent identifies curl by its certificate, pinned in the trust
store. Without a certificate, with a wrong one, or capped at TLS 1.2, curl gets
nothing. curl must be installed (``apt-get install curl``): this test fails
without it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from curl_runner import curl

from sealwire.agent._task_run import TaskContext
from sealwire.identity import Identity
from sealwire_tls import pem, self_signed_certificate
from sealwire_tls.testing import export_client_files, tls_agent


async def handler(task: TaskContext) -> None:
    await task.artifact((task.message.parts[0].text or "").upper(), name="upper")
    await task.complete("done")


def _body(method: str) -> str:
    message = {"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "from curl"}]}
    return json.dumps({"jsonrpc": "2.0", "id": 7, "method": method, "params": {"message": message}})


@pytest.mark.parametrize("http", ["--http1.1", "--http2"])
async def test_curl_with_a_client_certificate(tmp_path: Path, http: str) -> None:
    caller = Identity.generate()
    allowed = tmp_path / "allowed.pem"
    allowed.write_bytes(pem([self_signed_certificate(caller)]))
    agent = tls_agent("tls-agent", options={"client_certificates": [str(allowed)]})
    agent.on_message(handler)
    async with agent:
        agent.trust.pin(caller.public)
        url = agent.card.offers[0].url + "/"
        pin = agent.card.offer("tls").params["spkiSha256"]  # type: ignore[union-attr]
        pin = pin.replace("-", "+").replace("_", "/") + "=" * (-len(pin) % 4)
        server_cert = self_signed_certificate(agent.identity)
        cert, key, server = export_client_files(caller, tmp_path, server_cert)
        common = ["--cacert", str(server), "--pinnedpubkey", f"sha256//{pin}", "--tlsv1.3", http,
                  "-H", "Content-Type: application/json", "-H", "A2A-Version: 1.0"]  # fmt: skip
        mine = ["--cert", str(cert), "--key", str(key)]

        code, out = await curl(*common, *mine, "--data", _body("SendMessage"), url)
        assert code == 0, out
        task = json.loads(out)["result"]["task"]
        assert task["status"]["state"] == "TASK_STATE_COMPLETED"
        assert task["artifacts"][0]["parts"][0]["text"] == "FROM CURL"

        code, out = await curl(*common, *mine, "-N", "-H", "Accept: text/event-stream",
                                "--data", _body("SendStreamingMessage"), url)  # fmt: skip
        events = [json.loads(line[6:]) for line in out.splitlines() if line.startswith("data: ")]
        assert code == 0 and events, out
        assert events[-1]["result"]["statusUpdate"]["status"]["state"] == "TASK_STATE_COMPLETED"

        code, out = await curl(*common, "--data", _body("SendMessage"), "-w", "%{http_code}", url)
        assert out.endswith("403"), out  # no certificate
        (tmp_path / "stranger").mkdir()
        stranger, stranger_key, _ = export_client_files(
            Identity.generate(), tmp_path / "stranger", self_signed_certificate(agent.identity)
        )
        refused = [
            [*common, "--cert", str(stranger), "--key", str(stranger_key)],  # unknown certificate
            ["--cacert", str(server), "--tls-max", "1.2", http, *mine],  # TLS 1.2 only
        ]
        for args in refused:
            code, out = await curl(*args, "--data", _body("SendMessage"), url)
            assert code != 0 and "TASK_STATE" not in out, out
