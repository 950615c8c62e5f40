"""Loading plugins from the ``syncd.plugins`` entry-point group.

Bundled providers are registered through the same group as third-party ones. A plugin that
fails to import, registers a hook syncd does not define, or raises from a hook is reported
and skipped; the others keep working.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any, TypeVar

import pluggy
from pydantic import BaseModel

from daemon import PROJECT, hookimpl, hookspecs
from daemon.errors import SyncdError
from daemon.logs import get_logger
from daemon.provider import Provider

__all__ = [
    "ENTRY_POINT_GROUP",
    "PluginFailure",
    "PluginInfo",
    "Plugins",
    "UnknownProvider",
    "await_me_maybe",
    "load_plugins",
]

ENTRY_POINT_GROUP = "syncd.plugins"
log = get_logger("syncd.plugins")
T = TypeVar("T")


async def await_me_maybe(value: T | Awaitable[T]) -> T:
    """``value`` itself, or what it resolves to when a hook returned an awaitable."""
    if inspect.isawaitable(value):
        return await value
    return value


class UnknownProvider(SyncdError, KeyError):
    """No loaded plugin provides this name."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = sorted(known)
        super().__init__(name)

    def __str__(self) -> str:
        known = ", ".join(self.known) or "none"
        return f"unknown provider {self.name!r} (loaded providers: {known})"


@dataclass(frozen=True, slots=True)
class PluginInfo:
    """A loaded plugin, as ``syncd plugins`` shows it."""

    name: str
    module: str
    distribution: str | None
    version: str | None
    hooks: tuple[str, ...]
    providers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PluginFailure:
    """A plugin that was skipped, and why."""

    name: str
    error: str


class _CoreHooks:
    """syncd's own default hook implementations (registered last, answer last)."""

    def __init__(self, plugins: Plugins) -> None:
        self._plugins = plugins

    @hookimpl(trylast=True)
    def syncd_provider_options_model(self, provider: str) -> type[BaseModel] | None:
        found = self._plugins.providers.get(provider)
        return found.options_model() if found is not None else None


@dataclass
class Plugins:
    """The plugin manager with what was loaded, what failed, and the providers."""

    pm: pluggy.PluginManager
    loaded: list[PluginInfo] = field(default_factory=list)
    failed: list[PluginFailure] = field(default_factory=list)
    providers: dict[str, Provider] = field(default_factory=dict)
    provider_plugin: dict[str, str] = field(default_factory=dict)

    @property
    def hook(self) -> Any:
        return self.pm.hook

    def provider(self, name: str) -> Provider:
        """The provider called ``name``; :class:`UnknownProvider` lists the loaded ones."""
        try:
            return self.providers[name]
        except KeyError:
            raise UnknownProvider(name, self.providers) from None

    def options_model(self, provider: str) -> type[BaseModel] | None:
        result: type[BaseModel] | None = self.pm.hook.syncd_provider_options_model(
            provider=provider
        )
        return result


def _hook_names(pm: pluggy.PluginManager, plugin: object) -> tuple[str, ...]:
    callers = pm.get_hookcallers(plugin) or []
    return tuple(sorted(c.name for c in callers))


def _dist_of(ep: EntryPoint) -> tuple[str | None, str | None]:
    dist = ep.dist
    if dist is None:
        return None, None
    return dist.metadata["Name"], dist.version


def _register(plugins: Plugins, name: str, obj: object, ep: EntryPoint | None) -> None:
    pm = plugins.pm
    try:
        pm.register(obj, name=name)
    except Exception as exc:
        plugins.failed.append(PluginFailure(name, f"{type(exc).__name__}: {exc}"))
        log.error("plugins.register_failed", plugin=name, error=str(exc))
        return
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        pm.unregister(obj)
        plugins.failed.append(PluginFailure(name, f"unknown hook: {exc}"))
        log.error("plugins.unknown_hook", plugin=name, error=str(exc))
        return
    dist, version = _dist_of(ep) if ep is not None else (None, None)
    module = getattr(obj, "__name__", type(obj).__module__)
    plugins.loaded.append(PluginInfo(name, module, dist, version, _hook_names(pm, obj)))


def _collect_providers(plugins: Plugins) -> None:
    pm = plugins.pm
    for impl in pm.hook.syncd_register_providers.get_hookimpls():
        name = impl.plugin_name
        try:
            returned: Any = impl.function()
            provided: list[Any] = list(returned or [])
            for p in provided:
                if not isinstance(p, Provider):
                    raise TypeError(f"{p!r} does not implement the Provider protocol")
                if p.name in plugins.providers:
                    raise ValueError(
                        f"provider {p.name!r} is already registered by "
                        f"plugin {plugins.provider_plugin[p.name]!r}"
                    )
        except Exception as exc:
            pm.unregister(name=name)
            plugins.loaded = [i for i in plugins.loaded if i.name != name]
            plugins.failed.append(PluginFailure(name, f"{type(exc).__name__}: {exc}"))
            log.error("plugins.providers_failed", plugin=name, error=str(exc))
            continue
        for p in provided:
            plugins.providers[p.name] = p
            plugins.provider_plugin[p.name] = name
        plugins.loaded = [
            PluginInfo(i.name, i.module, i.distribution, i.version, i.hooks,
                       tuple(p.name for p in provided))
            if i.name == name else i
            for i in plugins.loaded
        ]


def load_plugins(
    allow: Iterable[str] | None = None,
    *,
    trace: bool = False,
    extra: Iterable[tuple[str, object]] = (),
) -> Plugins:
    """Load every plugin of the ``syncd.plugins`` group (only ``allow`` when given).

    :param allow: names of entry points to load; None loads all.
    :param trace: log every hook call and its result.
    :param extra: ``(name, plugin)`` pairs registered directly (tests, embedding).
    """
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    plugins = Plugins(pm)
    allowed = set(allow) if allow is not None else None
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if allowed is not None and ep.name not in allowed:
            log.debug("plugins.skipped", plugin=ep.name, reason="not in allow-list")
            continue
        if pm.has_plugin(ep.name):
            plugins.failed.append(PluginFailure(ep.name, "a plugin with this name is loaded"))
            continue
        try:
            obj = ep.load()
        except Exception as exc:
            plugins.failed.append(PluginFailure(ep.name, f"{type(exc).__name__}: {exc}"))
            log.error("plugins.load_failed", plugin=ep.name, entry_point=ep.value, error=str(exc))
            continue
        _register(plugins, ep.name, obj, ep)
    for name, obj in extra:
        _register(plugins, name, obj, None)
    if allowed is not None:
        for missing in sorted(allowed - {i.name for i in plugins.loaded}
                              - {f.name for f in plugins.failed}):
            plugins.failed.append(PluginFailure(missing, "in the allow-list but not installed"))
    _collect_providers(plugins)
    pm.register(_CoreHooks(plugins), name="syncd.core")
    if trace:
        pm.trace.root.setwriter(lambda msg: log.debug("plugins.trace", message=msg.rstrip()))
        pm.enable_tracing()
    for info in plugins.loaded:
        log.debug("plugins.loaded", plugin=info.name, version=info.version,
                  providers=list(info.providers))
    return plugins
