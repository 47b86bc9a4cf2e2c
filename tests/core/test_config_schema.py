"""sealwire.toml: read through a typed schema and checked against the loaded plugins,
written by a TOML writer; every bad input is one line naming the file, the key and
what is allowed (issue 17, item 1)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealwire import hookimpl
from sealwire.agent import Agent, TaskContext
from sealwire.config import (
    AgentConfig,
    StoreConfig,
    describe_trust,
    init_home,
    migrate_store,
    open_home,
    read_config,
)
from sealwire.errors import ConfigurationError
from sealwire.identity import Identity, TrustMode
from sealwire.plugins import Registry, load_registry
from sealwire.store import (
    MemoryStore,
    SqliteStore,
    StateStore,
    StoreBackend,
    StoreKey,
    StoreOption,
)

INJECTION = 'tcp://127.0.0.1:7000", "tcp://0.0.0.0:7001'
"""What issue 17 saw add a second listen URL when the file was written with f-strings."""


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry()


@pytest.fixture(autouse=True)
def _file_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEALWIRE_STORE_KEY", raising=False)


BAD_FILES = [
    # (file text, what the one-line error must say)
    ("[nonsense]\n", "unknown key nonsense (allowed: agent, policy, bindings, push)"),
    (
        "[agent]\ncolour = 'red'\n",
        "unknown key agent.colour (allowed: name, description, listen, relay, relay_id,"
        " relay_ca, trust, store)",
    ),
    (
        "[agent]\ntrust = 'blind'\n",
        "agent.trust must be one of 'tofu', 'pinned' or 'allowlist', not 'blind'",
    ),
    ("[agent]\nname = 3\n", "agent.name must be a string, not 3"),
    ("[agent]\nlisten = 'tcp://x:1'\n", "agent.listen must be a list, not 'tcp://x:1'"),
    (
        "[agent]\nlisten = ['foo://bar']\n",
        "agent.listen[0]: no transport or binding serves 'foo' (allowed schemes: ",
    ),
    (
        "[agent]\nlisten = ['tcp://127.0.0.1:1', 'bar']\n",
        "agent.listen[1]: 'bar' is not a URL of the form SCHEME://HOST:PORT",
    ),
    (
        f"[agent]\nlisten = ['{INJECTION}']\n",
        "agent.listen[0]: 'tcp://127.0.0.1:7000\", \"tcp://0.0.0.0:7001' is not a URL"
        " (it holds a space, a quote or a control character)",
    ),
    ("[agent]\nlisten = ['tcp://h:99999']\n", "agent.listen[0]: 'tcp://h:99999' has no valid port"),
    (
        "[agent]\nrelay = 'ftp://relay:21'\n",
        "agent.relay: 'ftp://relay:21': the scheme must be one of http, https",
    ),
    ("[agent]\nrelay_id = 'nope'\n", "agent.relay_id: must be a relay id (sw1..."),
    (
        "[bindings.nosuch]\nx = 1\n",
        "[bindings.nosuch]: no binding 'nosuch' is loaded (loaded: dtls, mls, noise, signal, tls",
    ),
    ("[bindings]\nnoise = 3\n", "bindings.noise must be a table, not 3"),
    (
        "[bindings.noise]\npatterns = ['ZZ']\n",
        "bindings.noise.patterns: 'ZZ' is not supported (allowed: IK, XX, XK)",
    ),
    (
        "[bindings.noise]\nsuites = ['ROT13_MD5']\n",
        "bindings.noise.suites: 'ROT13_MD5' is not supported (allowed: ChaChaPoly_SHA256,",
    ),
    (
        "[bindings.noise]\npattern = ['XX']\n",
        "unknown key bindings.noise.pattern (allowed: datagram_rekey_after, patterns,"
        " per_message_forward_secrecy, post_quantum, rekey_messages,"
        " rekey_seconds, suites)",
    ),
    (
        "[bindings.noise]\npost_quantum = 'yes'\n",
        "bindings.noise.post_quantum must be true, false or \"required\", not 'yes'",
    ),
    ("[bindings.noise]\nrekey_messages = 0\n", "bindings.noise.rekey_messages must be a positive"),
    (
        "[bindings.signal]\nheader_encryption = 'yes'\n",
        "bindings.signal.header_encryption must be true or false, not 'yes'",
    ),
    (
        "[bindings.signal]\ncolour = 1\n",
        "unknown key bindings.signal.colour (allowed: header_encryption, require_pq)",
    ),
    ("[bindings.mls]\ncipher_suite = 'nosuch'\n", "cipher_suite 'nosuch' is not one an agent"),
    ("[bindings.mls]\nexternal_joins = 1\n", "bindings.mls.external_joins must be true or false"),
    ("[bindings.tls]\nenroll = 'yes'\n", "bindings.tls.enroll must be true or false"),
    ("[bindings.tls]\nca_certificate = 'ca.pem'\n", "ca_certificate and ca_key go together"),
    ("[bindings.dtls]\nmtu = -1\n", "bindings.dtls.mtu: expected a positive integer"),
    ("[bindings.dtls]\nversions = ['9.9']\n", "unknown DTLS version '9.9'"),
    (
        "[policy]\nprefer = ['nosuch']\n",
        "policy.prefer: no binding 'nosuch' is loaded (loaded: dtls, mls, noise, signal, tls",
    ),
    (
        "[policy]\ndeny_bindings = ['noise', 'nosuch']\n",
        "policy.deny_bindings: no binding 'nosuch' is loaded (loaded: dtls, mls, noise",
    ),
    (
        "[policy.peers.sw1x]\nbinding = 'nosuch'\n",
        "policy.peers.sw1x.binding: no binding 'nosuch' is loaded",
    ),
    (
        "[policy]\ncolour = 1\n",
        "unknown key policy.colour (allowed: deny_bindings, deny_peers, peers,"
        " per_message_forward_secrecy, prefer, require)",
    ),
    ("[policy]\nrequire = ['magic']\n", "policy.require: unknown property 'magic' (known: "),
    ("[push]\ncolour = 1\n", "push: unknown option(s) colour"),
    ("[agent.store]\nbackend = 'nosuch'\n", "no store backend 'nosuch' (known: sqlite"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_FILES)
def test_each_bad_input_is_one_line_naming_the_file_the_key_and_what_is_allowed(
    registry: Registry, text: str, expected: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        AgentConfig.from_toml(text, source="/etc/agent/sealwire.toml", registry=registry)
    message = str(caught.value)
    assert message.startswith("/etc/agent/sealwire.toml: "), message
    assert expected in message, message
    assert "\n" not in message


def test_the_same_errors_come_through_open_home(registry: Registry, tmp_path: Path) -> None:
    init_home(tmp_path, name="a", registry=registry)
    path = tmp_path / "sealwire.toml"
    good = path.read_text()
    for text, expected in [
        ("\n[bindings.noise]\npatterns = ['ZZ']\n", "bindings.noise.patterns: 'ZZ'"),
        ("prefer = ['nosuch']\n", "policy.prefer: no binding 'nosuch' is loaded"),
    ]:
        path.write_text(good + text)  # [policy] is the file's last table
        with pytest.raises(ConfigurationError) as caught:
            open_home(tmp_path, registry)
        assert str(caught.value).startswith(f"{path}: ") and expected in str(caught.value)


def test_a_scheme_served_only_by_a_denied_binding_is_refused(registry: Registry) -> None:
    text = "[agent]\nlisten = ['https://127.0.0.1:0']\n\n[policy]\ndeny_bindings = ['tls']\n"
    with pytest.raises(ConfigurationError, match="no transport or binding serves 'https'"):
        AgentConfig.from_toml(text, registry=registry)
    AgentConfig.from_toml(text.replace("'tls'", "'dtls'"), registry=registry)


def test_the_default_policy_needs_no_binding_installed() -> None:
    bare = load_registry(load_entry_points=False)  # built-ins only: no binding at all
    assert AgentConfig.from_toml(AgentConfig().to_toml(), registry=bare) == AgentConfig()


def test_good_options_of_every_binding_are_accepted(registry: Registry) -> None:
    text = """
[agent]
listen = ["tcp://127.0.0.1:0", "ws://127.0.0.1:0", "udp://127.0.0.1:0", "https://127.0.0.1:0"]

[bindings.noise]
patterns = ["XX", "IK"]
suites = ["AESGCM_BLAKE2b"]
post_quantum = "required"
per_message_forward_secrecy = true
rekey_messages = 1000
rekey_seconds = 60.5
datagram_rekey_after = 10

[bindings.signal]
header_encryption = true
require_pq = false

[bindings.mls]
key_package_max_lifetime_days = 7
external_joins = true

[bindings.tls]
enroll = false
http2 = true
timeout = 5
hosts = ["localhost"]

[bindings.dtls]
versions = ["1.2"]
mtu = 1200

[policy]
prefer = ["noise", "tls"]
deny_bindings = ["dtls"]
"""
    config = AgentConfig.from_toml(text, registry=registry)
    assert config.bindings["noise"]["patterns"] == ["XX", "IK"]
    assert config.policy.prefer == ("noise", "tls")


NAMES = [
    'my "quoted" agent',
    "back\\slash\\",
    "two\nlines\r\n",
    "tab\there, NUL \x00 and DEL \x7f",
    "ünïcødé ✓ 名前 🛰",
    "'''triple''' \"\"\"quotes\"\"\"",
    '", listen = ["tcp://0.0.0.0:1"], x = "',
    "",
]


@pytest.mark.parametrize("name", NAMES)
def test_any_name_survives_init_and_every_command_reads_it(
    registry: Registry, tmp_path: Path, name: str
) -> None:
    init_home(tmp_path, name=name, description=name[::-1], registry=registry)
    config, _identity, store = open_home(tmp_path, registry)
    store.close()
    assert (config.name, config.description, config.listen) == (name, name[::-1], ())


def test_the_listen_injection_stays_one_url_and_is_refused(
    registry: Registry, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    with pytest.raises(ConfigurationError, match="is not a URL") as caught:
        init_home(home, name="a", listen=(INJECTION,), registry=registry)
    assert "agent.listen[0]" in str(caught.value)
    assert not home.exists()  # nothing was created
    assert AgentConfig(listen=(INJECTION,)).to_toml().count("tcp://") == 2  # one string...
    with pytest.raises(ConfigurationError, match=r"agent\.listen\[0\]"):
        AgentConfig.from_toml(AgentConfig(listen=(INJECTION,)).to_toml())  # ...refused


def test_a_scheme_nothing_serves_is_refused_at_init(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as caught:
        init_home(tmp_path / "h", name="a", listen=("foo://bar:1",), registry=registry)
    message = str(caught.value)
    assert "no transport or binding serves 'foo'" in message
    for scheme in ("tcp", "ws", "udp", "https"):
        assert scheme in message.split("allowed schemes: ")[1]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(name=st.text(max_size=40), description=st.text(max_size=40))
def test_property_any_name_and_description_round_trip_init_file_read(
    registry: Registry, tmp_path_factory: pytest.TempPathFactory, name: str, description: str
) -> None:
    home = tmp_path_factory.mktemp("home")
    init_home(home, name=name, description=description, registry=registry)
    config = read_config(home, registry)
    assert (config.name, config.description) == (name, description)


COMMENTED = """\
# my agent, by hand
[agent]
name = "kept"   # the name people see
description = "A Sealwire agent"
listen = []
trust = "tofu"

[bindings.noise]
# only XX here
patterns = ["XX"]

[policy]
# require = ["mutual_auth", "forward_secrecy"]
prefer = ["noise"]
"""


def _open_elsewhere(options: Mapping[str, str], key: StoreKey, home: Path) -> StateStore:
    return SqliteStore.open(home / options["file"], key)


class ElsewherePlugin:
    """A store backend ``elsewhere``: a SQLite file named by its option ``file``."""

    @hookimpl
    def sealwire_state_stores(self) -> Sequence[StoreBackend]:
        return [
            StoreBackend(
                "elsewhere",
                lambda location, key: SqliteStore.open(location, key),
                options=(StoreOption(name="file", help="the file", required=True),),
                open_configured=_open_elsewhere,
            )
        ]


def test_migrate_rewrites_the_store_table_and_keeps_everything_else(tmp_path: Path) -> None:
    registry = load_registry(extra_plugins=[ElsewherePlugin()])
    init_home(tmp_path, name="kept", registry=registry)
    (tmp_path / "sealwire.toml").write_text(COMMENTED)
    migrate_store(tmp_path, StoreConfig(backend="elsewhere", options={"file": "x.db"}), registry)
    text = (tmp_path / "sealwire.toml").read_text()
    for line in COMMENTED.splitlines():
        assert line in text.splitlines(), line  # every line the person wrote
    config = read_config(tmp_path, registry)
    assert config.store == StoreConfig(backend="elsewhere", options={"file": "x.db"})
    assert config.bindings == {"noise": {"patterns": ["XX"]}}
    migrate_store(tmp_path, StoreConfig(), registry)  # and back: the table goes
    text = (tmp_path / "sealwire.toml").read_text()
    assert "[agent.store]" not in text and "# only XX here" in text


def test_init_writes_the_policy_hints_last(registry: Registry, tmp_path: Path) -> None:
    init_home(tmp_path, name="a", registry=registry)
    text = (tmp_path / "sealwire.toml").read_text()
    assert text.rstrip().endswith('[policy]\n# require = ["mutual_auth", "forward_secrecy"]\n'
                                  "# deny_bindings = []\n# deny_peers = []")  # fmt: skip


# -- key files ---------------------------------------------------------------------------


def test_a_store_key_readable_by_others_is_refused_with_the_chmod(
    registry: Registry, tmp_path: Path
) -> None:
    init_home(tmp_path, name="a", registry=registry)
    key = tmp_path / "store.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    key.chmod(0o644)
    with pytest.raises(ConfigurationError) as caught:
        open_home(tmp_path, registry)
    assert str(caught.value).endswith(f"run 'chmod 600 {key}'")
    key.chmod(0o600)
    open_home(tmp_path, registry)[2].close()


def test_a_tls_ca_key_readable_by_others_is_refused_with_the_chmod(
    registry: Registry, tmp_path: Path
) -> None:
    ca_key = tmp_path / "ca.key"
    ca_key.write_bytes(b"not read: the mode is checked first")
    ca_key.chmod(0o640)
    text = f"[bindings.tls]\nca_certificate = 'ca.pem'\nca_key = '{ca_key}'\n"
    with pytest.raises(ConfigurationError, match=f"run 'chmod 600 {ca_key}'"):
        AgentConfig.from_toml(text, registry=registry)
    ca_key.chmod(0o600)
    AgentConfig.from_toml(text, registry=registry)


# -- the handler -------------------------------------------------------------------------


def plain_handler(task: TaskContext) -> None:
    """Not async: would fail on every task."""


class AsyncCallable:
    async def __call__(self, task: TaskContext) -> None:
        await task.complete("ok")


@pytest.fixture
def agent() -> Iterator[Agent]:
    registry = load_registry(load_entry_points=False)
    agent = Agent(Identity.generate(), MemoryStore(), registry=registry)
    yield agent
    agent.store.close()


def test_a_handler_that_is_not_async_is_refused_by_name(agent: Agent) -> None:
    with pytest.raises(ConfigurationError) as caught:
        agent.on_message(plain_handler)  # type: ignore[arg-type]
    assert "test_config_schema.plain_handler must be an async function" in str(caught.value)
    with pytest.raises(ConfigurationError, match="<lambda> must be an async function"):
        agent.on_message(lambda task: task.complete("ok"))


def test_async_handlers_are_accepted(agent: Agent) -> None:
    async def handle(task: TaskContext) -> None:
        await task.complete("ok")

    assert agent.on_message(handle) is handle
    callable_object = AsyncCallable()
    assert agent.on_message(callable_object) is callable_object


# -- what init tells -----------------------------------------------------------------------


def test_describe_trust_says_what_the_defaults_admit() -> None:
    lines = describe_trust(AgentConfig(listen=("https://127.0.0.1:0",)))
    text = "\n".join(lines)
    assert lines[0].startswith("trust: tofu (trust on first use): any agent")
    assert "tls: enrolment is on (the default)" in text and "enroll = false" in text
    pinned = describe_trust(
        AgentConfig(trust=TrustMode.PINNED, bindings={"tls": {"enroll": False}})
    )
    assert pinned[0].startswith("trust: pinned: only agents pinned")
    assert any(line.startswith("tls: enrolment is off") for line in pinned)
    assert describe_trust(AgentConfig(trust=TrustMode.ALLOWLIST))[0].startswith("trust: allowlist")
    relay = describe_trust(AgentConfig(relay="https://r:8700", relay_id="sw1abc"))
    assert relay[-1].startswith("relay: https://r:8700, pinned to relay id sw1abc")


def test_the_key_file_written_by_init_is_private(registry: Registry, tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        init_home(tmp_path, name="a", registry=registry)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "store.key").stat().st_mode) == 0o600


FULL = """
[agent]
name = "full"
listen = ["tcp://127.0.0.1:0"]
relay = "https://relay.example:8700"
relay_id = "RELAY_ID"
relay_ca = "relay-ca.pem"
trust = "allowlist"

[agent.store]
backend = "sqlite"

[bindings.noise]
patterns = ["XX"]
rekey_seconds = 30.5

[push]
enabled = false
reason = "air-gapped"

[policy]
require = ["mutual_auth"]
deny_bindings = ["dtls"]
deny_peers = ["sw1nobody"]
prefer = ["tls", "noise"]
per_message_forward_secrecy = true

[policy.peers.sw1peer]
binding = "noise"
require = ["forward_secrecy"]
per_message_forward_secrecy = false
"""
"""Every table and key the writer writes, with values other than the defaults."""


def test_a_full_configuration_round_trips_through_the_writer(registry: Registry) -> None:
    text = FULL.replace("RELAY_ID", Identity.generate().agent_id)
    config = AgentConfig.from_toml(text, registry=registry)
    assert AgentConfig.from_toml(config.to_toml(), registry=registry) == config


def test_a_name_that_is_not_utf8_is_refused_before_anything_is_made(
    registry: Registry, tmp_path: Path
) -> None:
    name = b"bad \xff".decode("utf-8", "surrogateescape")  # as argv brings such bytes
    with pytest.raises(ConfigurationError, match="is not UTF-8 text"):
        init_home(tmp_path / "h", name=name, registry=registry)
    assert not (tmp_path / "h").exists()
