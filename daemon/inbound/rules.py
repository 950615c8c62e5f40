"""Inbound mappings: how a provider's values become platform values, and who wins.

An inbound mapping is written per entity, keyed by the *platform* field it writes (so each
platform field is written from one provider field), with the provider field it reads and
the same transforms outbound mappings use::

    inbound:
      customer:
        customer.first_name: {from: GivenName, policy: provider_wins}
        customer.last_name: {from: FamilyName, transforms: [strip], policy: newest_wins}
        customer.marketing_opt_in: subscribed          # short form: platform_wins

Provider fields come from the plugin's inbound field catalogue
(:attr:`daemon.provider.EntitySupport.inbound_fields`); platform fields from
:data:`daemon.inbound.fields.PLATFORM_FIELDS`, and only columns on the allow-list
(``SYNCD_INBOUND_WRITABLE``) may be written. A template's inbound rules and an
integration's are merged as outbound rules are (a null override removes one).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError

from daemon.errors import SyncdError
from daemon.inbound.fields import PLATFORM_FIELDS, PlatformField
from daemon.mapping import TRANSFORMS, MappingProblem, RuleForms, TransformCall, fits
from daemon.provider import EntitySupport, FieldType

__all__ = [
    "INBOUND_KEY",
    "POLICIES",
    "InboundMapping",
    "InboundRule",
    "InvalidValue",
    "Policy",
    "apply_rule",
    "normal",
    "parse_inbound",
    "validate_inbound",
]

#: Where inbound rules sit in a template's ``mappings`` and an integration's
#: ``field_mappings`` (beside the outbound rules, which are keyed by entity).
INBOUND_KEY = "inbound"

Policy = Literal["platform_wins", "provider_wins", "newest_wins"]
POLICIES: tuple[str, ...] = ("platform_wins", "provider_wins", "newest_wins")


class InboundRule(RuleForms):
    """Where one platform field's value comes from at the provider, and who wins."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    source: str = Field(alias="from", min_length=1,
                        description="A field of the provider's inbound catalogue.")
    transforms: tuple[TransformCall, ...] = ()
    policy: Policy = Field(
        default="platform_wins",
        description="platform_wins (the provider's edits are refused and overwritten), "
        "provider_wins, or newest_wins (the later change time; ties go to the platform).")

    def as_json(self) -> dict[str, Any]:
        """As stored: only what is set."""
        out: dict[str, Any] = {"from": self.source}
        if self.transforms:
            out["transforms"] = [{"name": t.name, **t.params} for t in self.transforms]
        if self.policy != "platform_wins":
            out["policy"] = self.policy
        return out


#: ``{platform field: rule}`` for one entity.
InboundMapping = dict[str, InboundRule]


def parse_inbound(raw: Any) -> dict[str, dict[str, InboundRule | None]]:
    """``{entity: {platform field: rule or None}}`` from stored JSON (None removes a rule).

    Raises :class:`ValueError` on a malformed section.
    """
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ValueError("the inbound mapping must be an object")
    out: dict[str, dict[str, InboundRule | None]] = {}
    for entity, rules in raw.items():
        if not isinstance(rules, Mapping):
            raise ValueError(f"the inbound {entity} mapping must be an object")
        try:
            out[str(entity)] = {str(t): None if r is None else InboundRule.model_validate(r)
                                for t, r in rules.items()}
        except ValidationError as exc:
            raise ValueError(f"inbound {entity}: {str(exc).splitlines()[0]}") from None
    return out


def _output_type(rule: InboundRule, source_type: FieldType | None) -> FieldType | None:
    typ = source_type
    for call in rule.transforms:
        transform = TRANSFORMS.get(call.name)
        if transform is None:
            return None
        if transform.output is not None:
            typ = transform.output
    return typ


def validate_inbound(entity: str, mapping: Mapping[str, InboundRule],
                     support: EntitySupport | None, writable: Collection[str],
                     provider: str) -> list[MappingProblem]:
    """Every problem with ``mapping`` of ``entity``: unknown or disallowed platform fields,
    provider fields outside the plugin's inbound catalogue, transforms, types."""
    problems: list[MappingProblem] = []
    targets = PLATFORM_FIELDS.get(entity, {})
    catalogue = {f.path: f for f in support.inbound_fields} if support is not None else {}
    for target, rule in mapping.items():
        spec = targets.get(target)
        if spec is None:
            problems.append(MappingProblem(
                target, f"unknown platform field {target!r} for {entity}",
                "writable platform fields: " + (", ".join(sorted(targets)) or "none")))
            continue
        if spec.column_key not in writable:
            problems.append(MappingProblem(
                target, f"platform column {spec.column_key} is not on the allow-list of "
                "columns syncd may write",
                "add it to SYNCD_INBOUND_WRITABLE (now: " + (", ".join(sorted(writable))
                                                            or "none") + ")"))
            continue
        source = catalogue.get(rule.source)
        if source is None:
            offered = ", ".join(sorted(catalogue)) or "none"
            problems.append(MappingProblem(
                target, f"{provider} reports no {entity} field {rule.source!r}",
                f"its inbound fields: {offered}", "from"))
            continue
        source_type: FieldType = source.type
        bad = False
        for call in rule.transforms:
            transform = TRANSFORMS.get(call.name)
            if transform is None:
                problems.append(MappingProblem(
                    target, f"unknown transform {call.name!r}",
                    "valid transforms: " + ", ".join(sorted(TRANSFORMS)), "transforms"))
                bad = True
                break
            unknown = set(call.params) - set(transform.params)
            if unknown:
                problems.append(MappingProblem(
                    target, f"transform {call.name!r} takes no parameter "
                    f"{', '.join(sorted(unknown))}",
                    f"parameters: {', '.join(transform.params) or 'none'}", "transforms"))
                bad = True
            if transform.accepts is not None and source_type not in transform.accepts:
                problems.append(MappingProblem(
                    target, f"transform {call.name!r} does not accept {source_type} values",
                    f"it accepts: {', '.join(sorted(transform.accepts))}", "transforms"))
                bad = True
            if transform.output is not None:
                source_type = transform.output
        if bad:
            continue
        out = _output_type(rule, source.type)
        if out is not None and not fits(out, spec.type):
            problems.append(MappingProblem(
                target, f"type mismatch: {target!r} is {spec.type} but "
                f"{provider}'s {rule.source!r} is {out}",
                f"map a {spec.type} field or add a transform that produces {spec.type}",
                "from"))
    return problems


class InvalidValue(SyncdError, ValueError):
    """A provider value that cannot be written to its platform field."""


def _check(spec: PlatformField, value: Any) -> Any:
    kind = spec.type
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        raise InvalidValue(f"{spec.path} takes true or false, not {value!r:.60}")
    if kind in ("integer", "money"):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise InvalidValue(f"{spec.path} takes a whole number, not {value!r:.60}")
    if kind == "list":
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return list(value)
        raise InvalidValue(f"{spec.path} takes a list of text values, not {value!r:.60}")
    if kind == "datetime":
        if isinstance(value, datetime):
            return value
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value)
            except ValueError:
                pass
        raise InvalidValue(f"{spec.path} takes an ISO 8601 time, not {value!r:.60}")
    if not isinstance(value, str):
        raise InvalidValue(f"{spec.path} takes text, not {value!r:.60}")
    if "\x00" in value:
        raise InvalidValue(f"{spec.path} cannot hold a NUL character")
    if len(value) > 1000:
        raise InvalidValue(f"{spec.path} is longer than 1000 characters")
    if kind == "email":
        text = value.strip()
        local, at, domain = text.partition("@")
        if not at or not local or "." not in domain or any(c.isspace() for c in text):
            raise InvalidValue(f"{spec.path}: {value!r:.60} is not an e-mail address")
        return text
    return value


def apply_rule(rule: InboundRule, spec: PlatformField, value: Any) -> Any:
    """The platform value for a provider ``value`` (not None); :class:`InvalidValue` when a
    transform fails on it or the result does not fit the platform field."""
    for call in rule.transforms:
        try:
            value = TRANSFORMS[call.name].func(value, **call.params)
        except Exception as exc:
            raise InvalidValue(f"{spec.path}: transform {call.name} failed on {value!r:.60}: "
                               f"{type(exc).__name__}") from None
    return _check(spec, value)


def _canonical(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot store {type(value).__name__}")


def normal(value: Any) -> Any:
    """``value`` as it reads back from JSON, so values from anywhere compare equal."""
    if isinstance(value, datetime):
        return value.isoformat()
    return json.loads(json.dumps(value, default=_canonical))
