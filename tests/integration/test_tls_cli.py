"""The TLS binding from the command line, called by curl: what an operator does to let an
external HTTPS client in (a client certificate from a Sealwire home, pinned by the server)."""

from __future__ import annotations

import json
from pathlib import Path

from cli_runner import Cli
from curl_runner import curl
from ports import free_port

HANDLER = """
async def handle(task):
    await task.complete("hello " + task.message.parts[0].text)
"""
BODY = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": {
    "messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "curl"}]}}}  # fmt: skip


async def test_curl_calls_an_agent_served_over_https(tmp_path: Path) -> None:
    (tmp_path / "handler.py").write_text(HANDLER)
    cli = Cli(tmp_path)
    url = f"https://127.0.0.1:{free_port()}"
    await cli("--home", "server", "init", "--name", "server", "--listen", url)
    await cli("--home", "client", "init", "--name", "client")
    await cli("--home", "client", "tls", "cert", "--out", "client", "--key")
    await cli("--home", "server", "tls", "cert", "--out", "server")
    (tmp_path / "client.json").write_text(await cli("--home", "client", "card"))
    with (tmp_path / "server" / "sealwire.toml").open("a") as config:
        config.write('\n[bindings.tls]\nclient_certificates = ["client/cert.pem"]\n')
    request = ["--cacert", "server/cert.pem", "--cert", "client/cert.pem", "--key",
               "client/key.pem", "-H", "Content-Type: application/json",
               "--data", json.dumps(BODY), url + "/"]  # fmt: skip
    server = await cli.serve("server")
    try:
        code, out = await curl(*request, "-w", "%{http_code}", cwd=tmp_path)
        assert out.endswith("403"), out  # a known certificate, but an agent not trusted yet
        await cli("--home", "server", "trust", "pin", "client.json")
        code, out = await curl(*request, cwd=tmp_path)
        assert code == 0, out
        assert json.loads(out)["result"]["task"]["status"]["message"]["parts"][0]["text"] == (
            "hello curl"
        )
    finally:
        server.terminate()
        await server.wait()
