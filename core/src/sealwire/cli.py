"""The ``sealwire`` command line (ARCHITECTURE layer 11).

Every failure is one line on stderr (``sealwire: error: ...``) and a non-zero
exit code; a traceback means a bug.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from sealwire import __version__
from sealwire.agent import Agent, Handler
from sealwire.agent._card import build_card
from sealwire.codec import to_json
from sealwire.config import (
    StoreConfig,
    default_home,
    init_home,
    migrate_store,
    open_agent,
    open_home,
    relay_address,
)
from sealwire.errors import ConfigurationError, SealwireError
from sealwire.identity import TrustStore, verify_card
from sealwire.plugins import BLOCK_ENV, Registry, blocked_from_env, load_registry
from sealwire.policy import Policy, Situation
from sealwire.scaffold import SHAPES, new_plugin

__all__ = ["main"]

SITUATIONS = {
    "online": Situation(online=True),
    "offline": Situation(online=False),
    "group": Situation(group=True),
    "http": Situation(external_http=True),
    "datagram": Situation(datagram=True, online=True),
}


def _home(args: argparse.Namespace) -> Path:
    return Path(args.home) if args.home else default_home()


def cmd_init(args: argparse.Namespace, registry: Registry) -> int:
    relay_id = relay_ca = None
    if args.relay_ca and not args.relay:
        raise ConfigurationError("--relay-ca goes with --relay")
    if args.relay:
        from sealwire.relay import fetch_descriptor

        relay_ca = str(Path(args.relay_ca).resolve()) if args.relay_ca else None
        descriptor = asyncio.run(fetch_descriptor(args.relay, ca=relay_ca, relay_id=args.relay_id))
        relay_id = descriptor.relay_id
        print(f"relay {descriptor.relay_id} at {descriptor.url} (version {descriptor.version})")
    identity = init_home(
        _home(args),
        name=args.name,
        listen=tuple(args.listen),
        relay=args.relay.rstrip("/") if args.relay else None,
        relay_id=relay_id,
        relay_ca=relay_ca,
        post_quantum=args.post_quantum,
        store=_store_choice(args),
        registry=registry,
    )
    print(f"created agent {identity.agent_id} in {_home(args)}")
    return 0


def _store_choice(args: argparse.Namespace) -> StoreConfig | None:
    """``--store NAME`` and its ``--store-option KEY=VALUE`` (None: the default store)."""
    if args.store is None:
        if args.store_option:
            raise ConfigurationError("--store-option goes with --store")
        return None
    return StoreConfig.from_cli(args.store, args.store_option)


def _add_store_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store",
        metavar="BACKEND",
        help="where the state lives: sqlite (default) or a store plugin (aws, vault, gcp)",
    )
    p.add_argument(
        "--store-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option of the store backend, e.g. region=eu-west-1 (repeatable)",
    )


def cmd_store_migrate(args: argparse.Namespace, registry: Registry) -> int:
    target = _store_choice(args)
    assert target is not None  # --to is required
    moved = migrate_store(_home(args), target, registry)
    print(f"moved {moved} keys to the {target.backend} store; sealwire.toml now names it")
    return 0


def cmd_plugin_new(args: argparse.Namespace, registry: Registry) -> int:
    if args.name in registry.bindings:
        raise ConfigurationError(f"a binding named {args.name!r} is already installed")
    folder = new_plugin(args.name, shape=args.shape, into=Path(args.into))
    print(f"wrote {folder}: pip install -e '{folder}[test]', then pytest in it (see its README)")
    return 0


def _add_plugin_command(sub: Any) -> None:
    p = sub.add_parser("plugin", help="write a new plugin package")
    psub = p.add_subparsers(dest="plugin_command", required=True, metavar="ACTION")
    n = psub.add_parser("new", help="an installable plugin that passes the contract suite")
    n.add_argument("name", help="the binding's name, e.g. my-binding")
    n.add_argument("--shape", choices=SHAPES, default="session")
    n.add_argument("--into", default=".", help="the folder to write sealwire-NAME in")
    n.set_defaults(run=cmd_plugin_new)


def _add_store_command(sub: Any) -> None:
    p = sub.add_parser("store", help="the agent's state store")
    ssub = p.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    m = ssub.add_parser("migrate", help="move the state to another store, verified")
    m.add_argument("--to", dest="store", required=True, metavar="BACKEND")
    m.add_argument(
        "--store-option", action="append", default=[], metavar="KEY=VALUE", help="repeatable"
    )
    m.set_defaults(run=cmd_store_migrate)


def _local_card(args: argparse.Namespace, registry: Registry) -> dict[str, Any]:
    config, identity, store = open_home(_home(args), registry)
    store.close()
    policy = _policy(config, registry)
    return build_card(
        identity,
        name=config.name,
        description=config.description,
        version=__version__,
        bindings=policy.local_offers(identity.public),
        listen_urls=config.listen,
        relay_address=relay_address(config, identity),
        options=config.bindings,
    )


def _policy(config: Any, registry: Registry) -> Policy:
    """The agent's policy, with its binding options (what Noise's hybrid depends on)."""
    return Policy(
        config.policy, registry.bindings, registry.policy_rules, binding_options=config.bindings
    )


def cmd_card(args: argparse.Namespace, registry: Registry) -> int:
    print(json.dumps(_local_card(args, registry), indent=2))
    return 0


def cmd_plugins(args: argparse.Namespace, registry: Registry) -> int:
    for plugin in registry.plugins:
        print(f"plugin {plugin.name}: {plugin.distribution} {plugin.version}")
    for name, cls in sorted(registry.bindings.items()):
        info = cls.info
        props = ", ".join(sorted(info.properties))
        print(f"binding {name} {info.version} ({info.uri}, {info.shape}): {props}")
    if not registry.bindings:
        print("no bindings installed")
    return 0


def _read_card(path: str) -> Any:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        return json.loads(text)
    except OSError as exc:
        raise SealwireError(f"cannot read card {path}: {exc.strerror}") from None
    except ValueError:
        raise SealwireError(f"card {path} is not JSON") from None


def cmd_policy_explain(args: argparse.Namespace, registry: Registry) -> int:
    peer = verify_card(_read_card(args.peer_card))
    config, _identity, store = open_home(_home(args), registry)
    store.close()
    local = verify_card(_local_card(args, registry))
    decision = _policy(config, registry).decide(peer, SITUATIONS[args.situation], local)
    print(f"peer: {peer.identity.agent_id} ({peer.name})")
    print(decision.explain())
    return 0


def _load_handler(spec: str) -> Handler:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigurationError(f"--handler must be MODULE:FUNCTION, not {spec!r}")
    sys.path.insert(0, os.getcwd())
    try:
        handler = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"cannot load handler {spec}: {exc}") from None
    if not callable(handler):
        raise ConfigurationError(f"handler {spec} is not callable")
    return cast(Handler, handler)


async def _run_agent(agent: Agent) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with agent:
            print(f"agent {agent.agent_id} ({agent.name}) is serving", flush=True)
            for offer in agent.card.offers:
                print(f"  {offer.name}: {offer.url}", flush=True)
            await stop.wait()
    finally:
        await _close(agent)


async def _close(agent: Agent) -> None:
    if agent.relay is not None:
        await agent.relay.close()
    agent.store.close()


def cmd_serve(args: argparse.Namespace, registry: Registry) -> int:
    handler = _load_handler(args.handler)
    agent = open_agent(_home(args), registry)
    agent.on_message(handler)
    asyncio.run(_run_agent(agent))
    return 0


async def _send(
    agent: Agent, card: Any, text: str, situation: Situation, stream: bool, verbose: bool = False
) -> int:
    try:
        async with agent:
            peer = agent.peer(card)
            decision = agent.explain(peer, situation)
            print(f"# via {decision.binding} ({decision.url}): {decision.reason}", file=sys.stderr)
            if verbose:  # what the handshake will run: it fails rather than give less
                lines = [f"binding: {decision.binding}", *decision.session_description()]
                for line in lines:
                    print(f"# {line}", file=sys.stderr)
            if stream:
                async for event in agent.stream_message(peer, text, situation=situation):
                    print(json.dumps(to_json(event)), flush=True)
                return 0
            result = await agent.send_message(peer, text, situation=situation)
            print(json.dumps(to_json(result), indent=2))
            return 0
    finally:
        await _close(agent)


def cmd_send(args: argparse.Namespace, registry: Registry) -> int:
    card = _read_card(args.peer_card)
    agent = open_agent(_home(args), registry)
    coro = _send(agent, card, args.text, SITUATIONS[args.situation], args.stream, args.verbose)
    try:
        return asyncio.run(asyncio.wait_for(coro, args.timeout))
    except TimeoutError:
        raise SealwireError(f"no answer within {args.timeout:g} s") from None


def cmd_sidecar(args: argparse.Namespace, registry: Registry) -> int:
    from sealwire.adapters._cli import run_sidecar

    return run_sidecar(args, _home(args), registry, _read_card)


def cmd_demo(args: argparse.Namespace, registry: Registry) -> int:
    from sealwire.demo import run_demo

    return asyncio.run(run_demo(registry, transport=args.transport))


def cmd_trust(args: argparse.Namespace, registry: Registry) -> int:
    config, _identity, store = open_home(_home(args), registry)
    try:
        trust = TrustStore(store, config.trust)
        if args.trust_command == "pin":
            card = verify_card(_read_card(args.card))
            trust.pin(card.identity)
            agent_id = card.identity.agent_id
        else:
            agent_id = args.agent_id
            {"allow": trust.allow, "deny": trust.deny, "forget": trust.forget}[args.trust_command](
                agent_id
            )
    finally:
        store.close()
    print(f"{args.trust_command}: {agent_id}")
    return 0


def build_parser(registry: Registry) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sealwire", description=("End-to-end security for agent-to-agent (A2A) communication.")
    )
    parser.add_argument("--version", action="version", version=f"sealwire {__version__}")
    parser.add_argument("--home", help="agent home folder (default $SEALWIRE_HOME or .sealwire)")
    _add_disable_plugin(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("init", help="create an identity, a store and a configuration")
    p.add_argument("--name", default="sealwire-agent")
    p.add_argument(
        "--listen",
        action="append",
        default=[],
        metavar="URL",
        help="transport URL to serve sessions on, e.g. tcp://127.0.0.1:7000",
    )
    p.add_argument(
        "--relay",
        help="relay URL for mailboxes and groups: its signed descriptor is fetched "
        "and its relay id pinned in sealwire.toml",
    )
    p.add_argument(
        "--relay-id", help="the relay id you expect (sw1...): init fails if the relay is another"
    )
    p.add_argument(
        "--relay-ca",
        metavar="PEM",
        help="CA certificates (or the relay's own certificate) to trust for an https:// relay",
    )
    p.add_argument("--post-quantum", action="store_true", help="add ML-DSA-65 and ML-KEM-768 keys")
    _add_store_arguments(p)
    p.set_defaults(run=cmd_init)
    _add_store_command(sub)

    sub.add_parser("card", help="print this agent's signed card").set_defaults(run=cmd_card)
    sub.add_parser("plugins", help="list plugins and bindings").set_defaults(run=cmd_plugins)
    _add_plugin_command(sub)

    p = sub.add_parser("policy", help="binding policy")
    psub = p.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    e = psub.add_parser("explain", help="which binding would be used with a peer, and why")
    e.add_argument("peer_card", help="the peer's signed card (JSON file, or - for stdin)")
    e.add_argument("--situation", choices=sorted(SITUATIONS), default="online")
    e.set_defaults(run=cmd_policy_explain)

    p = sub.add_parser("serve", help="run this agent: serve A2A requests with a handler")
    p.add_argument(
        "--handler",
        required=True,
        metavar="MODULE:FUNCTION",
        help="async function taking a sealwire.agent.TaskContext",
    )
    p.set_defaults(run=cmd_serve)

    p = sub.add_parser("send", help="send a message to a peer and print the task (A2A JSON)")
    p.add_argument("peer_card", help="the peer's signed card (JSON file, or - for stdin)")
    p.add_argument("text", help="the message text")
    p.add_argument("--situation", choices=sorted(SITUATIONS), default="online")
    p.add_argument("--stream", action="store_true", help="print each stream event as it comes")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the answer")
    p.add_argument(
        "--verbose",
        action="store_true",
        help="print the binding, protocol, suite and whether key exchange and "
        "authentication are post-quantum (on stderr)",
    )
    p.set_defaults(run=cmd_send)

    p = sub.add_parser("sidecar", help="put an A2A HTTP server behind this agent's bindings")
    p.add_argument(
        "--upstream",
        required=True,
        metavar="URL",
        help="the A2A server's base URL on loopback, e.g. http://127.0.0.1:9999",
    )
    p.add_argument(
        "--peer",
        action="append",
        default=[],
        metavar="NAME=CARD_FILE",
        help="a peer the upstream may call at <local>/peers/NAME",
    )
    p.add_argument(
        "--local",
        default="127.0.0.1:0",
        metavar="HOST:PORT",
        help="where the upstream calls peers (default: a free loopback port)",
    )
    p.set_defaults(run=cmd_sidecar)

    p = sub.add_parser("trust", help="which peers this agent trusts (the trust store)")
    tsub = p.add_subparsers(dest="trust_command", required=True, metavar="ACTION")
    t = tsub.add_parser("pin", help="pin the keys of a peer's signed card (file, or - for stdin)")
    t.add_argument("card")
    for action, text in (
        ("allow", "put an agent id on the allow-list"),
        ("deny", "refuse an agent id from now on, whatever else says"),
        ("forget", "drop the pin, allow and deny entries of an agent id"),
    ):
        tsub.add_parser(action, help=text).add_argument("agent_id")
    p.set_defaults(run=cmd_trust)

    p = sub.add_parser("demo", help="two local agents exchange a task over a secure binding")
    p.add_argument("--transport", choices=["tcp", "ws", "udp"], default="tcp")
    p.set_defaults(run=cmd_demo)

    for command in registry.cli_commands.values():
        p = sub.add_parser(command.name, help=command.help)
        command.configure(p)
        p.set_defaults(run=lambda a, _r, c=command: c.run(a))
    return parser


def _add_disable_plugin(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--disable-plugin",
        action="append",
        default=[],
        metavar="NAME",
        help=f"do not load this plugin (repeatable; as ${BLOCK_ENV}, which it adds to)",
    )


def _block_disabled_plugins(argv: Sequence[str]) -> None:
    """Apply ``--disable-plugin`` before any plugin loads: through the environment,
    so that every registry this process (and its children) loads leaves them out."""
    early = argparse.ArgumentParser(add_help=False)
    _add_disable_plugin(early)
    disabled = set(early.parse_known_args(argv)[0].disable_plugin)
    if disabled:
        os.environ[BLOCK_ENV] = ",".join(sorted(blocked_from_env() | disabled))


def _registry_for(argv: Sequence[str]) -> Registry:
    """Every plugin; if one cannot load, the one line saying which and how to go on
    without it, and then for ``--help`` and ``--version`` the built-in commands."""
    try:
        return load_registry()
    except ConfigurationError as exc:
        if not {"-h", "--help", "--version"} & set(argv):
            raise
        print(f"sealwire: error: {exc}", file=sys.stderr)
        return load_registry(load_entry_points=False)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sealwire`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        _block_disabled_plugins(argv)
        registry = _registry_for(argv)
        args = build_parser(registry).parse_args(argv)
        code: int = args.run(args, registry)
        return code
    except SealwireError as exc:
        print(f"sealwire: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
