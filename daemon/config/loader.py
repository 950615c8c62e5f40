"""Loading a config directory into a :class:`DesiredState`, or every problem with it.

``venues/*.yaml`` and ``templates/*.yaml`` are read, parsed with positions, validated by the
models, then checked against the loaded plugins: provider names, entities and directions,
credential keys, options (the provider's own model), and the effective field mapping of
each integration against the provider's field catalogue. Every problem is collected; a
config with any problem yields no desired state at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ValidationError

from daemon.config._locate import problems_from_validation
from daemon.config._yaml import KeyPath, Located, YamlError, parse_yaml
from daemon.config.applied import (
    AppliedFile,
    CheckedFile,
    FileSources,
    dependencies,
    file_digest,
    stored_name,
)
from daemon.config.desired import (
    DesiredIntegration,
    DesiredState,
    DesiredTemplate,
    Tombstone,
    rule_json,
)
from daemon.config.limits import DEFAULT_LIMITS, LimitExceeded, YamlLimits, check_size
from daemon.config.models import (
    IntegrationSpec,
    ScheduleSpec,
    TemplateFile,
    VenueFile,
    VenueSpec,
)
from daemon.config.problems import ConfigInvalid, ConfigProblem, format_path
from daemon.credential_scope import CredentialScope
from daemon.errors import SyncdError
from daemon.inbound.fields import load_inbound_settings
from daemon.inbound.rules import INBOUND_KEY, InboundRule, validate_inbound
from daemon.logs import get_logger
from daemon.mapping import FieldRule, merge_mappings, validate_mapping
from daemon.plugins import Plugins, UnknownProvider
from daemon.provider import AuthKind, Direction, Entity, Provider

__all__ = ["ConfigFiles", "config_files", "load_config", "load_config_files",
           "require_config_dir"]

InboundRules = Mapping[Entity, Mapping[str, InboundRule]]

log = get_logger("syncd.config")
_SUFFIXES = (".yaml", ".yml")
_ALWAYS_ALLOWED_CREDENTIALS = ("token", "webhook_secret")
_MAPPING_CACHE_SIZE = 1024


@dataclass(frozen=True, slots=True)
class ConfigFiles:
    """The files of a config directory, read once: names as shown in messages, and bytes."""

    root: Path
    venues: tuple[tuple[str, bytes], ...]
    templates: tuple[tuple[str, bytes], ...]

    @property
    def content_hash(self) -> str:
        digest = hashlib.sha256()
        for kind, files in (("venues", self.venues), ("templates", self.templates)):
            for name, data in files:
                # basename: the same as Path(name).name for a file, without building a Path
                digest.update(f"{kind}\0{os.path.basename(name)}\0{len(data)}\0".encode())
                digest.update(data)
        return digest.hexdigest()


def _list(directory: Path) -> list[str]:
    """Paths of the config files in ``directory``, by name (the same order as by path
    within one directory). Strings, not Paths: 10,000 Paths cost a tenth of a second."""
    if not directory.is_dir():
        return []
    base = str(directory)
    with os.scandir(base) as entries:
        names = sorted(e.name for e in entries
                       if os.path.splitext(e.name)[1] in _SUFFIXES and e.is_file())
    return [os.path.join(base, name) for name in names]


def _read(path: str, limits: YamlLimits) -> bytes:
    # One byte past the cap is enough to tell that a file is over it; never more. The read
    # is sized by the file: a buffer of the cap's size per file, shrunk afterwards, keeps a
    # page or more of memory each (40 MB for 10,000 small files).
    with open(path, "rb") as f:
        size = min(os.fstat(f.fileno()).st_size, limits.max_file_bytes)
        data = f.read(size + 1)
        if len(data) > size:  # it grew since: read on, up to the byte past the cap
            data += f.read(limits.max_file_bytes + 1 - len(data))
        return data


def require_config_dir(root: Path) -> None:
    """A missing config directory is an operator error (:class:`SyncdError`)."""
    if not root.is_dir():
        raise SyncdError(f"config directory {root} does not exist (set --config or "
                         "SYNCD_CONFIG_DIR)")


def config_files(root: Path, limits: YamlLimits = DEFAULT_LIMITS) -> ConfigFiles:
    """Read every config file under ``root``; a missing directory is an operator error.

    A file is read up to one byte past ``limits.max_file_bytes``, so that an oversized file
    costs no more than that and is reported as a problem by :func:`load_config_files`.
    """
    require_config_dir(root)
    venues = tuple((p, _read(p, limits)) for p in _list(root / "venues"))
    templates = tuple((p, _read(p, limits)) for p in _list(root / "templates"))
    return ConfigFiles(root, venues, templates)


# --- parsing ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Parsed:
    file: str
    located: Located
    model: Any
    complete: bool = True


def _parse(name: str, data: bytes, model: type[BaseModel],
           problems: list[ConfigProblem], limits: YamlLimits) -> _Parsed | None:
    try:
        check_size(len(data), limits)
    except LimitExceeded as exc:
        problems.append(ConfigProblem(name, exc.line, exc.column, "", exc.message, exc.hint))
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.append(ConfigProblem(name, 1, 1, "", f"not UTF-8 text (byte {exc.start})",
                                      "save the file as UTF-8"))
        return None
    try:
        located = parse_yaml(text, limits)
    except YamlError as exc:
        problems.append(ConfigProblem(name, exc.position.line, exc.position.column, "",
                                      exc.message, exc.hint))
        return None
    if not isinstance(located.data, dict):
        kind = "venue" if model is VenueFile else "template"
        problems.append(ConfigProblem(name, 1, 1, "", f"a {kind} file must be a mapping",
                                      "see docs/config-reference.md for the file layout"))
        return None
    try:
        parsed = model.model_validate(located.data)
    except ValidationError as exc:
        problems.extend(problems_from_validation(exc, located, name, model))
        if model is VenueFile:
            return _Parsed(name, located, _salvage(located.data), complete=False)
        return None
    return _Parsed(name, located, parsed)


@dataclass(slots=True)
class _PartialVenue:
    """What is valid in a venue file that failed validation, to check further."""

    venue: VenueSpec | None
    integrations: list[tuple[int, IntegrationSpec]]


def _salvage(data: dict[str, Any]) -> _PartialVenue:
    venue: VenueSpec | None = None
    with contextlib.suppress(ValidationError):
        venue = VenueSpec.model_validate(data.get("venue"))
    found: list[tuple[int, IntegrationSpec]] = []
    raw = data.get("integrations")
    if isinstance(raw, list):
        for i, item in enumerate(raw):
            with contextlib.suppress(ValidationError):
                found.append((i, IntegrationSpec.model_validate(item)))
    return _PartialVenue(venue, found)


# --- checking against plugins -----------------------------------------------------------------


class _Checker:
    def __init__(self, plugins: Plugins, problems: list[ConfigProblem],
                 scope: CredentialScope | None = None,
                 writable: Collection[str] = ()) -> None:
        self.plugins = plugins
        self.problems = problems
        self.scope = scope
        self.writable = frozenset(writable)
        self._mapping_cache: dict[Any, list[tuple[str, str, str, str]]] = {}
        self._options_models: dict[str, type[BaseModel] | None] = {}

    def add(self, parsed: _Parsed, path: KeyPath, message: str, hint: str = "",
            *, key: bool = False) -> None:
        pos = parsed.located.position(path, key=key)
        self.problems.append(ConfigProblem(parsed.file, pos.line, pos.column,
                                           format_path(path), message, hint))

    def provider(self, parsed: _Parsed, path: KeyPath, name: str) -> Provider | None:
        try:
            return self.plugins.provider(name)
        except UnknownProvider as exc:
            self.add(parsed, path, str(exc),
                     "install the plugin that provides it, or check SYNCD_PLUGINS")
            return None

    def options_model(self, provider: str) -> type[BaseModel] | None:
        if provider not in self._options_models:
            self._options_models[provider] = self.plugins.options_model(provider)
        return self._options_models[provider]

    def mapping_problems(self, provider: Provider, entity: Entity,
                         mapping: Mapping[str, FieldRule], *, required: bool,
                         cache_key: Any = None) -> list[tuple[str, str, str, str]]:
        """(target, key, message, hint) for each problem; memoised on ``cache_key``."""
        full_key = (provider.name, entity, required, cache_key)
        if cache_key is not None and full_key in self._mapping_cache:
            return self._mapping_cache[full_key]
        support = provider.capabilities.entities.get(entity)
        if support is None:
            found = [("", "", f"provider {provider.name!r} does not sync {entity.value}",
                      "it syncs: " + ", ".join(sorted(e.value for e in
                                                      provider.capabilities.entities)))]
        else:
            found = [(p.target, p.key, p.message, p.hint)
                     for p in validate_mapping(entity, mapping, support)
                     if required or not p.message.startswith("required ")]
        if cache_key is not None:
            if len(self._mapping_cache) >= _MAPPING_CACHE_SIZE:
                self._mapping_cache.clear()  # overrides unique to each venue never repeat
            self._mapping_cache[full_key] = found
        return found


    def inbound_problems(self, provider: Provider, entity: Entity,
                         rules: Mapping[str, InboundRule]) -> list[tuple[str, str, str, str]]:
        """(target, key, message, hint) for each problem of an inbound mapping."""
        support = provider.capabilities.entities.get(entity)
        if support is None:
            return [("", "", f"provider {provider.name!r} does not sync {entity.value}",
                     "it syncs: " + ", ".join(sorted(e.value for e in
                                                     provider.capabilities.entities)))]
        return [(p.target, p.key, p.message, p.hint) for p in validate_inbound(
            entity.value, rules, support, self.writable, provider.name)]


# --- templates --------------------------------------------------------------------------------


def _inbound_json(inbound: InboundRules) -> dict[str, Any]:
    return {entity.value: {target: rule.as_json() for target, rule in sorted(rules.items())}
            for entity, rules in sorted(inbound.items()) if rules}


def _template_json(mappings: Mapping[Entity, Mapping[str, FieldRule]],
                   inbound: InboundRules | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        entity.value: {target: rule_json(rule) for target, rule in sorted(rules.items())}
        for entity, rules in sorted(mappings.items())}
    if inbound:
        out[INBOUND_KEY] = _inbound_json(inbound)
    return out


def _check_templates(parsed: list[_Parsed], checker: _Checker) -> dict[tuple[str, str], Any]:
    """Config templates by (provider, name), each with its parsed model."""
    out: dict[tuple[str, str], _Parsed] = {}
    defaults: dict[str, _Parsed] = {}
    for item in parsed:
        tpl: TemplateFile = item.model
        provider = checker.provider(item, ("provider",), tpl.provider)
        key = (tpl.provider, tpl.name)
        if key in out:
            first = out[key].located.position(("name",))
            checker.add(item, ("name",), f"template {tpl.name!r} for {tpl.provider} is "
                        "defined twice", f"also in {out[key].file}:{first.line}:{first.column}")
        else:
            out[key] = item
        if tpl.default:
            if tpl.provider in defaults:
                checker.add(item, ("default",), f"a second default template for "
                            f"{tpl.provider}", f"{defaults[tpl.provider].file} is the "
                            "default already; one default per provider")
            else:
                defaults[tpl.provider] = item
        if provider is None:
            continue
        for entity, rules in tpl.mappings.items():
            for target, key_name, message, hint in checker.mapping_problems(
                    provider, entity, rules, required=False):
                path: KeyPath = ("mappings", entity.value)
                if target:
                    path = (*path, target) if target in rules else path
                    if key_name and target in rules:
                        path = (*path, key_name)
                checker.add(item, path, message, hint)
        for entity, inbound in tpl.inbound.items():
            for target, key_name, message, hint in checker.inbound_problems(
                    provider, entity, inbound):
                path = ("inbound", entity.value)
                if target in inbound:
                    path = (*path, target)
                    if key_name and isinstance(_raw_or_empty(item, path), dict):
                        path = (*path, key_name)
                checker.add(item, path, message, hint)
        for entity, rule_set in tpl.validation_rules.items():
            support = provider.capabilities.entities.get(entity)
            for i, target in enumerate(rule_set.required):
                if support is not None and support.field(target) is None:
                    checker.add(item, ("validation_rules", entity.value, "required", i),
                                f"unknown {support.remote_kind} field {target!r}",
                                "valid targets: " + ", ".join(
                                    sorted(f.path for f in support.fields)))
    return out


def _plugin_templates(plugins: Plugins, config: Mapping[tuple[str, str], _Parsed]
                      ) -> list[DesiredTemplate]:
    config_defaults = {key[0] for key, item in config.items() if item.model.default}
    out: list[DesiredTemplate] = []
    for name, provider in sorted(plugins.providers.items()):
        try:
            specs = list(provider.default_templates())
            for spec in specs:
                if (spec.provider, spec.name) in config:
                    continue  # the config's template of the same name wins
                mappings = {Entity(e): {t: FieldRule.model_validate(r) for t, r in m.items()}
                            for e, m in spec.mappings.items() if e != INBOUND_KEY}
                inbound = {Entity(e): {t: InboundRule.model_validate(r) for t, r in m.items()}
                           for e, m in (spec.mappings.get(INBOUND_KEY) or {}).items()}
                out.append(DesiredTemplate(
                    provider=spec.provider, name=spec.name, description=spec.description,
                    venue_type=spec.venue_type, mappings=_template_json(mappings, inbound),
                    # JSON-shaped, as the database gives it back (tuples become lists).
                    validation_rules=json.loads(json.dumps(dict(spec.validation_rules))),
                    is_default=spec.is_default and spec.provider not in config_defaults,
                    origin=f"plugin:{plugins.provider_plugin.get(name, name)}"))
        except Exception as exc:  # a broken plugin template must not block the config
            log.warning("config.plugin_template_invalid", provider=name, error=str(exc))
    return out


def _desired_templates(config: Mapping[tuple[str, str], _Parsed],
                       plugin: list[DesiredTemplate]) -> list[DesiredTemplate]:
    out = list(plugin)
    for (provider, name), item in config.items():
        tpl: TemplateFile = item.model
        out.append(DesiredTemplate(
            provider=provider, name=name, description=tpl.description,
            venue_type=tpl.venue_type, mappings=_template_json(tpl.mappings, tpl.inbound),
            validation_rules={e.value: {"required": list(r.required)}
                              for e, r in sorted(tpl.validation_rules.items())},
            is_default=tpl.default, origin=item.file))
    return sorted(out, key=lambda t: t.key)


class _TemplateIndex:
    """Template resolution: by name, else by venue type, else the provider's default."""

    def __init__(self, templates: Iterable[DesiredTemplate]) -> None:
        self.by_name: dict[tuple[str, str], DesiredTemplate] = {}
        self.by_type: dict[tuple[str, str], DesiredTemplate] = {}
        self.default: dict[str, DesiredTemplate] = {}
        # Config templates come first so that they win ties; then by name.
        ordered = sorted(templates, key=lambda t: (t.origin.startswith("plugin:"), t.name))
        for t in ordered:
            self.by_name[t.key] = t
            if t.venue_type is not None:
                self.by_type.setdefault((t.provider, t.venue_type), t)
            if t.is_default:
                self.default.setdefault(t.provider, t)
        self._rules: dict[tuple[str, str], dict[Entity, dict[str, FieldRule]]] = {}
        self._inbound: dict[tuple[str, str], dict[Entity, dict[str, InboundRule]]] = {}

    def resolve(self, provider: str, venue_type: str, name: str | None
                ) -> DesiredTemplate | None:
        if name is not None:
            return self.by_name.get((provider, name))
        return self.by_type.get((provider, venue_type)) or self.default.get(provider)

    def rules(self, template: DesiredTemplate) -> dict[Entity, dict[str, FieldRule]]:
        if template.key not in self._rules:
            self._rules[template.key] = {
                Entity(e): {t: FieldRule.model_validate(r) for t, r in m.items()}
                for e, m in template.mappings.items() if e != INBOUND_KEY}
        return self._rules[template.key]

    def inbound(self, template: DesiredTemplate) -> dict[Entity, dict[str, InboundRule]]:
        if template.key not in self._inbound:
            self._inbound[template.key] = {
                Entity(e): {t: InboundRule.model_validate(r) for t, r in m.items()}
                for e, m in (template.mappings.get(INBOUND_KEY) or {}).items()}
        return self._inbound[template.key]


# --- venues -----------------------------------------------------------------------------------


def _check_credentials(item: _Parsed, base: KeyPath, spec: IntegrationSpec,
                       provider: Provider, checker: _Checker) -> None:
    caps = provider.capabilities
    creds = spec.credentials
    path = (*base, "credentials")
    allowed = sorted({*caps.credential_keys, *_ALWAYS_ALLOWED_CREDENTIALS})
    scope = checker.scope
    for key, ref in creds.items():
        refused = scope.problem(ref) if scope is not None else None
        if refused is not None:
            checker.add(item, (*path, key), f"credential {key!r} is out of scope: {refused}",
                        _scope_hint(scope))
        if key not in allowed:
            checker.add(item, (*path, key), f"unknown credential {key!r} for {provider.name}",
                        "valid credential keys: " + ", ".join(allowed), key=True)
        elif ref == "oauth" and caps.auth is not AuthKind.OAUTH:
            checker.add(item, (*path, key), f"{provider.name} does not use OAuth",
                        "reference the key with env:NAME or file:PATH")
    oauth = "oauth" in creds.values()
    if caps.auth is AuthKind.OAUTH and not oauth:
        checker.add(item, path if "credentials" in _raw(item, base) else base,
                    f"{provider.name} connects with OAuth but no credential says oauth",
                    "add 'credentials: oauth' (the token comes from the OAuth flow)")
    if caps.auth is AuthKind.OAUTH:
        return  # the OAuth flow supplies the provider's credential keys
    for key in caps.credential_keys:
        if key not in creds:
            checker.add(item, path if "credentials" in _raw(item, base) else base,
                        f"missing credential {key!r} for {provider.name}",
                        f"add {key}: env:NAME or {key}: file:PATH under credentials")


def _scope_hint(scope: CredentialScope | None) -> str:
    if scope is None:
        return ""
    prefixes = ", ".join(scope.env_prefixes) or "(none allowed)"
    return (f"use env:NAME with NAME starting {prefixes} (SYNCD_CREDENTIAL_ENV_PREFIXES), "
            f"or file:PATH inside {scope.secrets_dir} (SYNCD_SECRETS_DIR)")


def _raw(item: _Parsed, path: KeyPath) -> Any:
    node: Any = item.located.data
    for part in path:
        node = node[part]
    return node


def _check_schedules(item: _Parsed, base: KeyPath, spec: IntegrationSpec,
                     provider: Provider, checker: _Checker) -> None:
    caps = provider.capabilities
    for entity, schedule in spec.schedules.items():
        path = (*base, "schedules", entity.value)
        support = caps.entities.get(entity)
        if support is None:
            checker.add(item, path, f"provider {provider.name!r} does not sync "
                        f"{entity.value}", "it syncs: " + ", ".join(
                            sorted(e.value for e in caps.entities)), key=True)
            continue
        wanted = ([Direction.PUSH, Direction.PULL] if schedule.direction is Direction.BOTH
                  else [schedule.direction])
        if not all(caps.supports(entity, d) for d in wanted):
            offered = sorted(d.value for d in support.directions)
            checker.add(item, (*path, "direction"), f"{provider.name} cannot "
                        f"{schedule.direction.value} {entity.value}",
                        "it supports: " + ", ".join(offered))
        if schedule.on_delete is not None and \
                schedule.on_delete not in support.delete_policies:
            checker.add(item, (*path, "on_delete"), f"{provider.name} cannot "
                        f"{schedule.on_delete} a deleted {entity.value}",
                        "it supports: " + ", ".join(sorted(support.delete_policies)))


def _check_options(item: _Parsed, base: KeyPath, spec: IntegrationSpec,
                   provider: Provider, checker: _Checker) -> dict[str, Any]:
    model = checker.options_model(provider.name)
    if model is None:
        return dict(spec.options)
    try:
        options = model.model_validate(spec.options)
    except ValidationError as exc:
        path = (*base, "options")
        checker.problems.extend(problems_from_validation(
            exc, item.located, item.file, model, prefix=path, root=_raw_or_empty(item, path)))
        return {}
    dumped: dict[str, Any] = options.model_dump(mode="json")
    return dumped


def _raw_or_empty(item: _Parsed, path: KeyPath) -> Any:
    try:
        return _raw(item, path)
    except (KeyError, IndexError, TypeError):
        return {}


def _effective_mapping(item: _Parsed, base: KeyPath, spec: IntegrationSpec,
                       provider: Provider, *, venue_type: str, index: _TemplateIndex,
                       checker: _Checker) -> tuple[DesiredTemplate | None, dict[str, Any]]:
    mpath = (*base, "mapping")
    template = index.resolve(provider.name, venue_type, spec.mapping.template)
    if spec.mapping.template is not None and template is None:
        names = sorted(n for p, n in index.by_name if p == provider.name)
        checker.add(item, (*mpath, "template"), f"no template {spec.mapping.template!r} "
                    f"for {provider.name}", "templates for it: " + (", ".join(names) or
                                                                     "none"))
        return None, {}
    base_rules = index.rules(template) if template is not None else {}
    overrides = spec.mapping.overrides
    if spec.schedules:
        scope = set(spec.schedules) | set(overrides)
    else:
        scope = set(base_rules) | set(overrides)
    required_rules: dict[str, Any] = dict(template.validation_rules) if template else {}
    result: dict[str, Any] = {}
    for entity in sorted(scope):
        entity_overrides = overrides.get(entity, {})
        merged = merge_mappings(base_rules.get(entity, {}), entity_overrides)
        cache_key = (template.key if template else None,
                     tuple(sorted((t, r.model_dump_json(by_alias=True) if r else "")
                                  for t, r in entity_overrides.items())))
        for target, key_name, msg, hint in checker.mapping_problems(
                provider, entity, merged, required=True, cache_key=cache_key):
            message = msg
            if target in entity_overrides:
                path: KeyPath = (*mpath, "overrides", entity.value, target)
                if key_name:
                    path = (*path, key_name)
            elif template is not None and spec.mapping.template is not None:
                path = (*mpath, "template")
                message = f"{entity.value}: {message} (template {template.name!r})"
            else:
                path = (*base, "provider")
                where = f"template {template.name!r}" if template else "no template found"
                message = f"{entity.value}: {message} ({where})"
            checker.add(item, path, message, hint)
        rules_for = required_rules.get(entity.value, {}).get("required", [])
        for target in rules_for:
            if target not in merged and template is not None:
                checker.add(item, mpath, f"{entity.value}: template {template.name!r} "
                            f"requires {target!r} to be mapped", "map it in overrides")
    # Stored as the integration's overrides, the template by reference (template_id): the
    # sync engine merges them, and a template edit reaches every integration using it.
    for entity, rules in sorted(overrides.items()):
        result[entity.value] = {t: rule_json(r) if r is not None else None
                                for t, r in sorted(rules.items())}
    inbound = _check_inbound(item, base, spec, provider, template=template, index=index,
                             checker=checker)
    if inbound:
        result[INBOUND_KEY] = inbound
    return template, result


def _check_inbound(item: _Parsed, base: KeyPath, spec: IntegrationSpec, provider: Provider,
                   *, template: DesiredTemplate | None, index: _TemplateIndex,
                   checker: _Checker) -> dict[str, Any]:
    """Check the effective inbound mapping (template's with the integration's on top); the
    integration's own rules as stored (a null removes the template's rule)."""
    ipath = (*base, "mapping", "inbound")
    from_template = index.inbound(template) if template is not None else {}
    overrides = spec.mapping.inbound
    for entity in sorted(set(from_template) | set(overrides)):
        own = overrides.get(entity, {})
        merged = {**from_template.get(entity, {}), **own}
        rules = {t: r for t, r in merged.items() if r is not None}
        for target, key_name, found, hint in checker.inbound_problems(provider, entity, rules):
            message = found
            if target in own:
                path: KeyPath = (*ipath, entity.value, target)
                if key_name and isinstance(_raw_or_empty(item, path), dict):
                    path = (*path, key_name)
            elif not target and entity in overrides:
                path = (*ipath, entity.value)
            elif template is not None and spec.mapping.template is not None:
                path = (*base, "mapping", "template")
                message = f"inbound {entity.value}: {message} (template {template.name!r})"
            else:
                path = (*base, "provider")
                where = f"template {template.name!r}" if template else "no template"
                message = f"inbound {entity.value}: {message} ({where})"
            checker.add(item, path, message, hint)
    return {entity.value: {t: r.as_json() if r is not None else None
                           for t, r in sorted(rules_.items())}
            for entity, rules_ in sorted(overrides.items())}


def _schedule_items(schedule: ScheduleSpec) -> tuple[tuple[str, str], ...]:
    items: tuple[tuple[str, str], ...] = (
        ("cron", schedule.cron), ("lane", schedule.lane),
        ("direction", schedule.direction.value))
    if schedule.on_delete is not None:
        items = (*items, ("on_delete", schedule.on_delete))
    return items


class _Shared:
    """One mapping object for every row that holds equal items (most schedules and many
    credentials repeat across venues: 10,000 venues hold a few hundred distinct ones).
    The mappings of desired rows are never changed once built."""

    def __init__(self) -> None:
        self._found: dict[tuple[tuple[str, Any], ...], dict[str, Any]] = {}

    def __call__(self, items: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
        found = self._found.get(items)
        if found is None:
            found = self._found[items] = dict(items)
        return found

    def nested(self, items: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]
               ) -> dict[str, Any]:
        """A mapping of mappings, both shared."""
        found = self._found.get(items)
        if found is None:
            found = self._found[items] = {key: self(inner) for key, inner in items}
        return found


class _VenueChecker:
    """Venue files checked one at a time: only what the desired state needs is kept, so a
    file's YAML and its positions are released as soon as it has been checked."""

    def __init__(self, index: _TemplateIndex, checker: _Checker, limits: YamlLimits) -> None:
        self.index = index
        self.checker = checker
        self.limits = limits
        self.integrations: list[DesiredIntegration] = []
        self.tombstones: list[Tombstone] = []
        #: The file each venue id was first seen in, with its bytes (read again to locate
        #: the id only if another file uses it too).
        self.ids: dict[UUID, tuple[str, bytes]] = {}
        self.shared = _Shared()
        #: What each file checked here declared: (venue id, providers, removed, file refs).
        self.declared: dict[str, tuple[UUID, list[str], list[str], list[str]]] = {}

    def skip(self, name: str, data: bytes, applied: AppliedFile,
             assumed: dict[tuple[UUID, str], tuple[str, str]]) -> bool:
        """Take a file as the last apply recorded it, without reading it; False when it
        must be read (its venue id is another file's too: the problem is reported there)."""
        if applied.venue_id in self.ids:
            return False
        scope = self.checker.scope
        if scope is not None and any(scope.problem(ref) is not None
                                     for ref in applied.secret_files):
            return False
        self.ids[applied.venue_id] = (name, data)
        for provider, digest in applied.rows.items():
            assumed[(applied.venue_id, provider)] = (digest, name)
        for provider in applied.removed:
            self.tombstones.append(Tombstone(applied.venue_id, provider, name))
        return True

    def add(self, item: _Parsed, data: bytes) -> None:
        checker = self.checker
        if item.complete:
            venue: VenueSpec | None = item.model.venue
            specs = list(enumerate(item.model.integrations))
        else:
            venue, specs = item.model.venue, item.model.integrations
        if venue is None:
            venue = VenueSpec(id=UUID(int=0), name="unnamed")
        elif venue.id in self.ids:
            first, first_data = self.ids[venue.id]
            pos = parse_yaml(first_data.decode("utf-8"), self.limits).position(("venue", "id"))
            checker.add(item, ("venue", "id"), f"venue id {venue.id} is used by two files",
                        f"also in {first}:{pos.line}:{pos.column}; each venue has its "
                        "own id")
        else:
            self.ids[venue.id] = (item.file, data)
        venue_type = venue.venue_type
        seen: dict[str, int] = {}
        declared: tuple[UUID, list[str], list[str], list[str]] = (venue.id, [], [], [])
        self.declared[item.file] = declared
        for i, spec in specs:
            base: KeyPath = ("integrations", i)
            if spec.provider in seen:
                checker.add(item, (*base, "provider"), f"{spec.provider} is listed twice for "
                            "this venue", f"merge it with integrations[{seen[spec.provider]}]")
                continue
            seen[spec.provider] = i
            if spec.removed:
                self.tombstones.append(Tombstone(venue.id, spec.provider, item.file))
                declared[2].append(spec.provider)
                continue
            provider = checker.provider(item, (*base, "provider"), spec.provider)
            if provider is None:
                continue
            before = len(checker.problems)
            _check_credentials(item, base, spec, provider, checker)
            _check_schedules(item, base, spec, provider, checker)
            options = _check_options(item, base, spec, provider, checker)
            template, mappings = _effective_mapping(item, base, spec, provider,
                                                    venue_type=venue_type, index=self.index,
                                                    checker=checker)
            if len(checker.problems) > before:
                continue
            shared = self.shared
            desired = DesiredIntegration(
                venue_id=venue.id, provider=sys.intern(spec.provider), venue_name=venue.name,
                venue_type=venue_type, timezone=sys.intern(venue.timezone),
                enabled=spec.enabled, environment=sys.intern(spec.environment),
                credentials=shared(tuple(sorted(spec.credentials.items()))),
                schedules=shared.nested(tuple((e.value, _schedule_items(s))
                                              for e, s in sorted(spec.schedules.items()))),
                field_mappings=mappings or shared(()), options=options,
                template=template.name if template else None, origin=item.file)
            # Its spec hash is computed when a change needs it, not for every row.
            self.integrations.append(desired)
            declared[1].append(spec.provider)
            declared[3].extend(ref for ref in spec.credentials.values()
                               if ref.startswith("file:"))


# --- entry points -----------------------------------------------------------------------------


def load_config_files(files: ConfigFiles, plugins: Plugins, *,
                      limits: YamlLimits = DEFAULT_LIMITS,
                      scope: CredentialScope | None = None,
                      writable: Collection[str] | None = None,
                      applied: Mapping[str, AppliedFile] | None = None) -> DesiredState:
    """The desired state of ``files``; :class:`ConfigInvalid` with every problem otherwise.

    Each file is held to ``limits``; with a ``scope``, a credential reference outside it
    is a problem too (without one, references are only checked when resolved). Inbound
    mappings may write only the platform columns in ``writable`` (default: the
    ``SYNCD_INBOUND_WRITABLE`` setting). ``applied`` is what the last apply recorded of each
    venue file (:mod:`daemon.config.applied`, by recorded name): a file whose bytes and
    dependencies match is not read again, and the state holds its rows in
    :attr:`DesiredState.sources` instead of its integrations.
    """
    problems: list[ConfigProblem] = []
    templates = [p for name, data in files.templates
                 if (p := _parse(name, data, TemplateFile, problems, limits)) is not None]
    allowed = load_inbound_settings().writable if writable is None else writable
    checker = _Checker(plugins, problems, scope, allowed)
    config_templates = _check_templates(templates, checker)
    desired_templates = _desired_templates(config_templates,
                                           _plugin_templates(plugins, config_templates))
    index = _TemplateIndex(desired_templates)
    venues = _VenueChecker(index, checker, limits)
    deps = dependencies(plugins, desired_templates, limits, scope, allowed)
    sources = FileSources(deps, tuple(name for name, _ in files.venues), applied)
    digests: dict[str, str] = {}
    skipped_data: dict[str, bytes] = {}
    # A template with a problem fails the load: every venue file is read, as without a record.
    usable = applied if applied is not None and not problems else None
    for name, data in files.venues:
        digest = digests[name] = file_digest(data)
        if usable is not None:
            entry = usable.get(stored_name(name))
            if entry is not None and entry.digest == digest and entry.deps == deps and \
                    venues.skip(name, data, entry, sources.assumed):
                sources.skipped[name] = entry
                skipped_data[name] = data
                continue
        parsed = _parse(name, data, VenueFile, problems, limits)
        if parsed is not None:
            venues.add(parsed, data)
    integrations, tombstones = venues.integrations, venues.tombstones
    if problems:
        raise ConfigInvalid(sorted(problems, key=lambda p: (p.file, p.line, p.column)))
    for name, (venue_id, providers, removed, refs) in venues.declared.items():
        sources.checked[name] = CheckedFile(digests[name], venue_id, tuple(providers),
                                            tuple(removed), tuple(sorted(set(refs))))

    def expand(names: Collection[str]) -> list[DesiredIntegration]:
        """Read and check skipped files after all (a plan found their rows changed)."""
        found: list[ConfigProblem] = []
        again = _VenueChecker(index, _Checker(plugins, found, scope, allowed), limits)
        for name in sorted(names):
            data = skipped_data[name]
            parsed = _parse(name, data, VenueFile, found, limits)
            if parsed is not None:
                again.add(parsed, data)
        if found:
            raise ConfigInvalid(sorted(found, key=lambda p: (p.file, p.line, p.column)))
        return again.integrations

    sources.expand = expand
    return DesiredState(
        integrations=tuple(integrations), templates=tuple(desired_templates),
        tombstones=tuple(tombstones), content_hash=files.content_hash,
        files=len(files.venues) + len(files.templates), sources=sources)


def load_config(root: Path, plugins: Plugins, *, limits: YamlLimits = DEFAULT_LIMITS,
                scope: CredentialScope | None = None,
                writable: Collection[str] | None = None,
                applied: Mapping[str, AppliedFile] | None = None) -> DesiredState:
    """Read and check the config directory ``root`` (see :func:`load_config_files`)."""
    return load_config_files(config_files(root, limits), plugins, limits=limits, scope=scope,
                             writable=writable, applied=applied)
