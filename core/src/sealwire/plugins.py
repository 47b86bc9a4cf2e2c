"""The plugin manager and the typed registry built from the hooks (ARCHITECTURE layer 4).

:func:`load_registry` builds a pluggy manager (never at import time), loads the
entry point group ``sealwire``, then the built-ins, checks every
implementation against its spec, and merges what the hooks contribute into a
:class:`Registry`. A blocked plugin name is never loaded. Two components of one
kind with the same name are an error naming both plugins.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib.metadata import entry_points
from typing import Any, TypeVar

import attrs
import pluggy

from sealwire import hookspecs
from sealwire.binding import Binding, parse_binding_uri, shape_types
from sealwire.components import (
    CliCommand,
    RelayBackendProvider,
    StoreKeyProvider,
    TransportProvider,
)
from sealwire.errors import ConfigurationError
from sealwire.policy import PolicyRule
from sealwire.store import StoreBackend

__all__ = [
    "BLOCK_ENV",
    "ENTRY_POINT_GROUP",
    "PluginInfo",
    "Registry",
    "blocked_from_env",
    "build_manager",
    "imported_when_called",
    "lazy_attributes",
    "load_registry",
]

ENTRY_POINT_GROUP = "sealwire"
BLOCK_ENV = "SEALWIRE_BLOCK_PLUGINS"
"""Comma-separated plugin (entry point) names never to load."""

T = TypeVar("T")


def imported_when_called(module: str, name: str) -> Callable[..., Any]:
    """``module.name``, imported on the first call rather than now.

    For what a hook contributes (a store's opener, a key loader) that needs a
    heavy SDK: every process loads every plugin at start-up, and only the one
    that uses the backend should pay for importing it.
    """

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__qualname__ = call.__name__ = name
    return call


def lazy_attributes(package: str, modules: Mapping[str, str]) -> Callable[[str], Any]:
    """A package's ``__getattr__`` (PEP 562) exporting each name of ``modules`` from its
    submodule (``{"name": "_submodule"}``), imported on first use: a plugin's package
    then imports a heavy SDK only when a name that needs it is read."""

    def getattr_(name: str) -> Any:
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    return getattr_


@attrs.frozen(kw_only=True)
class PluginInfo:
    """A loaded plugin: its name and the distribution that ships it."""

    name: str
    distribution: str
    version: str


@attrs.frozen(kw_only=True)
class Registry:
    """Everything the loaded plugins contribute, merged and checked by core."""

    plugins: tuple[PluginInfo, ...]
    bindings: Mapping[str, type[Binding]]
    transports: Mapping[str, TransportProvider]
    store_backends: Mapping[str, StoreBackend]
    store_key_providers: tuple[StoreKeyProvider, ...]
    relay_backends: Mapping[str, RelayBackendProvider]
    policy_rules: tuple[PolicyRule, ...]
    cli_commands: Mapping[str, CliCommand]

    def binding(self, name: str) -> type[Binding]:
        """The binding class called ``name``; ConfigurationError when none is loaded."""
        try:
            return self.bindings[name]
        except KeyError:
            loaded = ", ".join(sorted(self.bindings)) or "none"
            raise ConfigurationError(f"no binding {name!r} is loaded (loaded: {loaded})") from None

    def binding_for_uri(self, uri: str) -> type[Binding] | None:
        """The loaded binding that speaks ``uri`` (name and major version), if any."""
        name, major = parse_binding_uri(uri)
        cls = self.bindings.get(name)
        return cls if cls is not None and cls.info.major == major else None

    def transport(self, scheme: str) -> TransportProvider:
        """The transport for a URL scheme; ConfigurationError when none provides it."""
        try:
            return self.transports[scheme]
        except KeyError:
            raise ConfigurationError(f"no transport for scheme {scheme!r}") from None


def blocked_from_env() -> frozenset[str]:
    """Plugin names blocked by ``$SEALWIRE_BLOCK_PLUGINS``."""
    raw = os.environ.get(BLOCK_ENV, "")
    return frozenset(name.strip() for name in raw.split(",") if name.strip())


def build_manager(
    *,
    block: Iterable[str] = (),
    extra_plugins: Sequence[object] = (),
    load_entry_points: bool = True,
) -> tuple[pluggy.PluginManager, tuple[PluginInfo, ...]]:
    """A plugin manager with entry points, built-ins and ``extra_plugins`` registered."""
    from sealwire import _builtins

    blocked = frozenset(block) | blocked_from_env()
    pm = pluggy.PluginManager("sealwire")
    pm.add_hookspecs(hookspecs)
    infos: list[PluginInfo] = []
    for name in blocked:
        pm.set_blocked(name)
    shipped: dict[str, str] = {}
    if load_entry_points:
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if pm.is_blocked(ep.name) or pm.has_plugin(ep.name):
                continue
            dist = ep.dist
            shipped[ep.name] = f" (from {dist.name} {dist.version})" if dist else ""
            try:
                module = ep.load()
            except Exception as exc:  # any import failure of a third-party plugin
                raise _plugin_error(
                    ep.name, shipped, f"failed to load: {type(exc).__name__}: {exc}"
                ) from exc
            try:
                pm.register(module, name=ep.name)
            except pluggy.PluginValidationError as exc:  # a hook with a wrong signature
                raise _plugin_error(ep.name, shipped, _one_line(str(exc))) from exc
            infos.append(
                PluginInfo(
                    name=ep.name,
                    distribution=dist.name if dist else "?",
                    version=dist.version if dist else "?",
                )
            )
    if not pm.is_blocked("builtins"):
        pm.register(_builtins, name="builtins")
        infos.append(PluginInfo(name="builtins", distribution="sealwire", version=_version()))
    for plugin in extra_plugins:
        registered = pm.register(plugin)
        if registered is not None:
            infos.append(PluginInfo(name=registered, distribution="(in process)", version="-"))
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:  # a misspelled hook name
        name = pm.get_name(exc.plugin) or "?"
        raise _plugin_error(name, shipped, _unknown_hooks(pm, exc)) from exc
    return pm, tuple(infos)


def _plugin_error(name: str, shipped: Mapping[str, str], problem: str) -> ConfigurationError:
    """One line: which plugin, from which distribution, what is wrong, how to go on without it."""
    return ConfigurationError(
        f"plugin {name!r}{shipped.get(name, '')} {problem}"
        f" (start without it: --disable-plugin {name} or {BLOCK_ENV}={name})"
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _unknown_hooks(pm: pluggy.PluginManager, exc: pluggy.PluginValidationError) -> str:
    """What :meth:`pluggy.PluginManager.check_pending` found: the plugin's hook names that
    no Sealwire hook has, each with the closest real one, and the list of hooks."""
    known = sorted(n for n in dir(hookspecs) if n.startswith(f"{ENTRY_POINT_GROUP}_"))
    unknown = sorted(
        caller.name
        for caller in pm.hook.__dict__.values()
        if isinstance(caller, pluggy.HookCaller)
        and not caller.has_spec()
        and any(impl.plugin is exc.plugin for impl in caller.get_hookimpls())
    )
    if not unknown:
        return _one_line(str(exc))
    guesses = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=1)
        guesses.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return (
        f"implements {', '.join(guesses)}, which Sealwire has no hook for"
        f" (hooks: {', '.join(known)})"
    )


def _version() -> str:
    from sealwire import __version__

    return __version__


def _contributions(pm: pluggy.PluginManager, hook_name: str) -> list[tuple[str, Any]]:
    """(plugin name, component) for every component each plugin contributes, in
    registration order. The hook is called through pluggy, so hook wrappers and
    pluggy's tracing see the call (and a wrapper may change what it returns)."""
    caller = getattr(pm.hook, hook_name)
    calls = [i for i in reversed(caller.get_hookimpls()) if not (i.hookwrapper or i.wrapper)]
    results = caller()
    # pluggy returns one result per implementation, in call order, leaving out
    # those that returned None: names are paired only when none did.
    if len(results) == len(calls):
        names = [impl.plugin_name for impl in calls]
    else:
        names = ["(a plugin)"] * len(results)
    out: list[tuple[str, Any]] = []
    for name, result in reversed(list(zip(names, results, strict=True))):
        for component in result or ():
            out.append((name, component))
    return out


def _own_name(component: Any) -> str:
    return str(component.name)


def _merge(
    pairs: list[tuple[str, T]], kind: str, name_of: Callable[[T], str] = _own_name
) -> dict[str, T]:
    merged: dict[str, T] = {}
    owner: dict[str, str] = {}
    for plugin, component in pairs:
        name = name_of(component)
        if name in merged:
            raise ConfigurationError(
                f"{kind} {name!r} is provided twice: by plugin {owner[name]!r} "
                f"and by plugin {plugin!r}"
            )
        merged[name] = component
        owner[name] = plugin
    return merged


def load_registry(
    *,
    block: Iterable[str] = (),
    extra_plugins: Sequence[object] = (),
    load_entry_points: bool = True,
) -> Registry:
    """Load every plugin and merge their contributions into a :class:`Registry`."""
    pm, infos = build_manager(
        block=block, extra_plugins=extra_plugins, load_entry_points=load_entry_points
    )
    bindings = _merge(_contributions(pm, "sealwire_bindings"), "binding", lambda cls: cls.info.name)
    for name, cls in bindings.items():
        if not (isinstance(cls, type) and issubclass(cls, Binding)):
            raise ConfigurationError(f"binding {name!r} is not a sealwire.binding.Binding class")
        types = shape_types(cls.info.shape)
        if not issubclass(cls, types):
            raise ConfigurationError(
                f"binding {name!r} declares shape {cls.info.shape.value} but is none of "
                + ", ".join(t.__name__ for t in types)
            )
        if inspect.isabstract(cls):
            missing = ", ".join(sorted(getattr(cls, "__abstractmethods__", ())))
            raise ConfigurationError(f"binding {name!r} does not implement: {missing}")
    return Registry(
        plugins=infos,
        bindings=bindings,
        transports=_merge(
            _contributions(pm, "sealwire_transports"), "transport", lambda t: t.scheme
        ),
        store_backends=_merge(_contributions(pm, "sealwire_state_stores"), "store"),
        store_key_providers=tuple(c for _, c in _contributions(pm, "sealwire_store_key_providers")),
        relay_backends=_merge(_contributions(pm, "sealwire_relay_backends"), "relay backend"),
        policy_rules=tuple(
            _merge(_contributions(pm, "sealwire_policy_rules"), "policy rule").values()
        ),
        cli_commands=_merge(_contributions(pm, "sealwire_cli_commands"), "CLI command"),
    )
