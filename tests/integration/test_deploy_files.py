"""The deployment example (deploy/) and the relay's operator page (docs/relay.md) stay
true to the code: the compose file parses and names files that exist, the relay
configurations it ships are valid, the systemd units pass ``systemd-analyze verify``
(when it is installed), and every relay key, limit and metric is documented.
No Docker needed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
import yaml

from sealwire_relay import RelayConfig
from sealwire_relay._limits import RelayLimits
from sealwire_relay._metrics import COUNTERS, GAUGES, HISTOGRAMS
from sealwire_relay._server import BACKEND_KEYS, RELAY_KEYS

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
# Where the units expect the installation; the test points them at this environment's.
INSTALLED_BIN = "/opt/sealwire/venv/bin/"


def test_compose_parses_and_references_files_that_exist() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"nats", "relay", "alice", "bob"} <= set(services)
    assert "-js" in services["nats"]["command"]  # JetStream, which the relay's backend needs
    named_volumes = set(compose.get("volumes", {}))
    for name, service in services.items():
        build = service.get("build")
        if build:
            context = (DEPLOY / build["context"]).resolve()
            assert context == ROOT, name
            assert (context / build["dockerfile"]).is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source}"
            else:
                assert source in named_volumes, f"{name}: {source}"
        for dependency in service.get("depends_on", []):
            assert dependency in services, f"{name} depends on {dependency}"
    relay = services["relay"]
    config_mount = next(v for v in relay["volumes"] if v.endswith("relay.toml:ro"))
    config = RelayConfig.from_toml(DEPLOY / config_mount.split(":")[0])
    assert config.backend == "nats"
    assert config.url == "http://relay:8700"
    for agent in ("alice", "bob"):
        assert services[agent]["environment"]["SEALWIRE_RELAY"] == config.url


def test_dockerfile_copies_files_that_exist() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    sources = re.findall(r"^COPY (?!--from)(\S+) ", dockerfile, re.M)
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
    entrypoint = DEPLOY / "compose" / "agent-entrypoint.sh"
    assert os.access(entrypoint, os.X_OK)
    handler = re.search(r"echo_handler:handle", entrypoint.read_text())
    assert handler is not None and (DEPLOY / "echo_handler.py").is_file()


def test_the_shipped_relay_configurations_are_valid() -> None:
    for path in (DEPLOY / "systemd" / "relay.toml", DEPLOY / "compose" / "relay.toml"):
        config = RelayConfig.from_toml(path)
        assert config.identity_path.is_absolute(), path


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_systemd_units_verify(tmp_path: Path) -> None:
    assert len(UNITS) == 3
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "sealwire").exists()
    verify = []
    for unit in UNITS:
        text = unit.read_text()
        assert "DynamicUser=yes" in text and "ProtectSystem=strict" in text
        assert "NoNewPrivileges=yes" in text and "CapabilityBoundingSet=\n" in text
        name = unit.name.replace("@.service", "@example.service")
        (tmp_path / name).write_text(text.replace(INSTALLED_BIN, f"{bin_dir}/"))
        verify.append(str(tmp_path / name))
    done = subprocess.run(
        ["systemd-analyze", "verify", *verify], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr  # no unknown key, no warning


def test_every_relay_key_limit_and_metric_is_documented() -> None:
    page = (ROOT / "docs" / "relay.md").read_text()
    for key in RELAY_KEYS - {"sqlite", "nats", "limits", "peers"}:
        assert f"`{key}`" in page, key
    for backend, keys in BACKEND_KEYS.items():
        for key in keys:
            assert f"`[relay.{backend}] {key}`" in page, (backend, key)
    for field in attrs.fields(RelayLimits):
        assert f"`{field.name}`" in page, field.name
    for metric in [*COUNTERS, *GAUGES, *HISTOGRAMS]:
        assert f"`{metric}`" in page, metric
