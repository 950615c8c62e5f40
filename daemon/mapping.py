"""Field mappings: how a platform record becomes a provider record.

A mapping is written per entity, keyed by the *target* path in the provider's record (so a
target is set once), each with a rule saying where the value comes from::

    customer:
      email_address: {from: customer.email, transforms: [lowercase]}
      merge_fields.FNAME: customer.first_name        # short form: just the source path
      merge_fields.SOURCE: {const: ticketing}
    product:
      name: event.name
      variations.0.price_money.amount: event.price   # digits index into lists

Source paths name fields of the normalised platform record (:data:`SOURCE_FIELDS`); target
paths must be in the provider's field catalogue (:class:`daemon.provider.EntitySupport`).
Templates and per-integration overrides are merged with :func:`merge_mappings`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from daemon.provider import Entity, EntitySupport, FieldType

__all__ = [
    "SOURCE_FIELDS",
    "TRANSFORMS",
    "EntityMapping",
    "FieldRule",
    "MappingProblem",
    "RuleForms",
    "Transform",
    "TransformCall",
    "apply_mapping",
    "content_hash",
    "fits",
    "get_path",
    "merge_mappings",
    "parse_entity_mapping",
    "set_path",
    "validate_mapping",
]

# --- the source side ------------------------------------------------------------------------

_VENUE: dict[str, FieldType] = {
    "venue.id": "string",
    "venue.name": "string",
    "venue.timezone": "string",
    "venue.type": "string",
}
_CUSTOMER: dict[str, FieldType] = {
    "customer.id": "string",
    "customer.email": "email",
    "customer.first_name": "string",
    "customer.last_name": "string",
    "customer.full_name": "string",
    "customer.phone": "string",
    "customer.marketing_opt_in": "boolean",
    "customer.tags": "list",
    "customer.created_at": "datetime",
    "customer.updated_at": "datetime",
}
_EVENT: dict[str, FieldType] = {
    "event.id": "string",
    "event.name": "string",
    "event.description": "string",
    "event.category": "string",
    "event.status": "string",
    "event.starts_at": "datetime",
    "event.ends_at": "datetime",
    "event.price": "money",
    "event.currency": "currency",
    "event.capacity": "integer",
    "event.url": "string",
    "event.updated_at": "datetime",
}
_ORDER: dict[str, FieldType] = {
    "order.id": "string",
    "order.amount": "money",
    "order.fee": "money",
    "order.currency": "currency",
    "order.quantity": "integer",
    "order.status": "string",
    "order.ticket_type": "string",
    "order.purchased_at": "datetime",
    "order.updated_at": "datetime",
}

_STOCK: dict[str, FieldType] = {
    "event.id": "string",
    "event.name": "string",
    "event.status": "string",
    "event.starts_at": "datetime",
    "event.capacity": "integer",
    "event.sold": "integer",
    "event.pos_sold": "integer",
    "event.remaining": "integer",
}

#: Fields of the normalised platform record available to mappings, per entity, with types.
#: ``money`` is an integer in minor units; the matching ``currency`` field gives its currency.
SOURCE_FIELDS: Mapping[Entity, Mapping[str, FieldType]] = {
    Entity.PRODUCT: {**_EVENT, **_VENUE},
    Entity.CUSTOMER: {**_CUSTOMER, **_VENUE},
    Entity.TRANSACTION: {
        **_ORDER,
        **{k: v for k, v in _CUSTOMER.items() if k != "customer.tags"},
        "event.id": "string",
        "event.name": "string",
        "event.starts_at": "datetime",
        **_VENUE,
    },
    Entity.INVENTORY: {**_STOCK, **_VENUE},
}

# --- transforms -----------------------------------------------------------------------------


def _minor_to_decimal(value: Any, exponent: int = 2) -> str:
    amount = Decimal(int(value)).scaleb(-exponent)
    return f"{amount:.{exponent}f}"


def _decimal_to_minor(value: Any, exponent: int = 2) -> int:
    return int((Decimal(str(value)).scaleb(exponent)).to_integral_value())


def _split(value: Any, part: int) -> str:
    words = str(value).split()
    if not words:
        return ""
    return words[0] if part == 0 else " ".join(words[1:])


def _date_format(value: Any, format: str = "%Y-%m-%d") -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, date):
        raise TypeError(f"expected a date or datetime, got {type(value).__name__}")
    return value.strftime(format)


def _iso(value: Any) -> str:
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _truncate(value: Any, length: int) -> str:
    return str(value)[:length]


def _md5(value: Any) -> str:
    return hashlib.md5(str(value).strip().lower().encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True, slots=True)
class Transform:
    """A named value transform. ``accepts`` None means any input type."""

    name: str
    func: Callable[..., Any]
    output: FieldType | None
    accepts: frozenset[FieldType] | None = None
    params: tuple[str, ...] = ()
    description: str = ""


TRANSFORMS: Mapping[str, Transform] = {
    t.name: t
    for t in [
        Transform("lowercase", lambda v: str(v).lower(), None, None, (), "lower-case text"),
        Transform("uppercase", lambda v: str(v).upper(), None, None, (), "upper-case text"),
        Transform("strip", lambda v: str(v).strip(), None, None, (), "trim white space"),
        Transform("to_string", str, "string", None, (), "any value as text"),
        Transform("to_int", int, "integer", None, (), "a whole number"),
        Transform("minor_to_decimal", _minor_to_decimal, "decimal",
                  frozenset({"money", "integer"}), ("exponent",),
                  "minor units (1250) to a decimal string ('12.50')"),
        Transform("decimal_to_minor", _decimal_to_minor, "money",
                  frozenset({"decimal", "string"}), ("exponent",),
                  "a decimal string ('12.50') to minor units (1250)"),
        Transform("first_name", lambda v: _split(v, 0), "string",
                  frozenset({"string"}), (), "first word of a full name"),
        Transform("last_name", lambda v: _split(v, 1), "string",
                  frozenset({"string"}), (), "all but the first word of a full name"),
        Transform("date_format", _date_format, "string",
                  frozenset({"datetime", "date", "string"}), ("format",),
                  "strftime format, e.g. {name: date_format, format: '%Y-%m-%d'}"),
        Transform("iso_date", lambda v: _date_format(v, "%Y-%m-%d"), "date",
                  frozenset({"datetime", "date", "string"}), (), "YYYY-MM-DD"),
        Transform("iso_datetime", _iso, "datetime",
                  frozenset({"datetime", "date", "string"}), (), "ISO 8601 timestamp"),
        Transform("truncate", _truncate, "string", None, ("length",), "cut text to a length"),
        Transform("md5", _md5, "string", None, (), "MD5 hex of the lower-cased text"),
    ]
}

# Which source types satisfy a target type (after transforms).
_COMPATIBLE: Mapping[FieldType, frozenset[FieldType]] = {
    "string": frozenset({"string", "email", "currency", "date", "datetime", "decimal"}),
    "email": frozenset({"email", "string"}),
    "integer": frozenset({"integer", "money"}),
    "money": frozenset({"money", "integer"}),
    "decimal": frozenset({"decimal", "string"}),
    "boolean": frozenset({"boolean"}),
    "datetime": frozenset({"datetime", "string"}),
    "date": frozenset({"date", "datetime", "string"}),
    "currency": frozenset({"currency", "string"}),
    "list": frozenset({"list"}),
    "object": frozenset({"object"}),
}


def fits(have: FieldType, want: FieldType) -> bool:
    """Whether a value of type ``have`` may be written where ``want`` is expected."""
    return have in _COMPATIBLE.get(want, frozenset({want}))


class TransformCall(BaseModel):
    """One transform with its parameters: ``lowercase`` or ``{name: truncate, length: 40}``."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class RuleForms(BaseModel):
    """The short forms a mapping rule may be written in (outbound and inbound alike): a
    string is ``{from: ...}``; ``transform: x`` is one more transform, first; a transform
    may be given by its name alone."""

    @model_validator(mode="before")
    @classmethod
    def _short_forms(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"from": value}
        if isinstance(value, dict) and "transform" in value:
            value = dict(value)
            one = value.pop("transform")
            value["transforms"] = [one, *value.get("transforms", [])]
        return value

    @field_validator("transforms", mode="before", check_fields=False)
    @classmethod
    def _transform_names(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value


class FieldRule(RuleForms):
    """Where one target field's value comes from."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    source: str | None = Field(default=None, alias="from")
    const: Any = None
    default: Any = None
    transforms: tuple[TransformCall, ...] = ()

    @model_validator(mode="after")
    def _one_origin(self) -> FieldRule:
        if (self.source is None) == (self.const is None):
            raise ValueError("a mapping rule needs exactly one of 'from' or 'const'")
        return self


EntityMapping = dict[str, FieldRule]


def parse_entity_mapping(raw: Mapping[str, Any]) -> EntityMapping:
    """``{target: rule}`` from YAML-shaped data (strings or rule objects)."""
    return {str(target): FieldRule.model_validate(rule) for target, rule in raw.items()}


def merge_mappings(base: Mapping[str, FieldRule], overrides: Mapping[str, FieldRule | None]
                   ) -> EntityMapping:
    """A template's mapping with overrides applied; an override of None removes a target."""
    merged = dict(base)
    for target, rule in overrides.items():
        if rule is None:
            merged.pop(target, None)
        else:
            merged[target] = rule
    return merged


# --- applying -------------------------------------------------------------------------------


def get_path(record: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path, or None where any step is missing."""
    node: Any = record
    for part in path.split("."):
        if isinstance(node, Mapping):
            node = node.get(part)
        elif isinstance(node, list | tuple) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
        if node is None:
            return None
    return node


def set_path(target: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted path in nested dicts; a digit segment indexes (and grows) a list."""
    parts = path.split(".")
    node: Any = target
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        nxt: Any = None if last else ([] if parts[i + 1].isdigit() else {})
        if part.isdigit() and isinstance(node, list):
            index = int(part)
            while len(node) <= index:
                node.append(None)
            if last:
                node[index] = value
            else:
                if node[index] is None:
                    node[index] = nxt
                node = node[index]
        elif last:
            node[part] = value
        else:
            if node.get(part) is None:
                node[part] = nxt
            node = node[part]


def _apply_rule(rule: FieldRule, record: Mapping[str, Any]) -> Any:
    value = rule.const if rule.source is None else get_path(record, rule.source)
    if value is None:
        value = rule.default
    if value is None:
        return None
    for call in rule.transforms:
        value = TRANSFORMS[call.name].func(value, **call.params)
    return value


def apply_mapping(mapping: Mapping[str, FieldRule], record: Mapping[str, Any]) -> dict[str, Any]:
    """The provider record for ``record``. Targets whose value is None are left out."""
    out: dict[str, Any] = {}
    for target in sorted(mapping):
        value = _apply_rule(mapping[target], record)
        if value is not None:
            set_path(out, target, value)
    return out


def _canonical(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot hash {type(value).__name__}")


def content_hash(payload: Mapping[str, Any]) -> str:
    """A stable digest of a mapped record: equal payloads give equal hashes."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=_canonical)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- validating -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MappingProblem:
    """Something wrong with one target of a mapping."""

    target: str
    message: str
    hint: str = ""
    #: Where in the rule: "" (the target key), "from", "transforms", "const".
    key: str = ""


def _output_type(rule: FieldRule, entity: Entity) -> FieldType | None:
    if rule.source is None:
        return None
    typ: FieldType | None = SOURCE_FIELDS[entity].get(rule.source)
    for call in rule.transforms:
        transform = TRANSFORMS.get(call.name)
        if transform is None:
            return None
        if transform.output is not None:
            typ = transform.output
    return typ


def validate_mapping(
    entity: Entity, mapping: Mapping[str, FieldRule], support: EntitySupport
) -> list[MappingProblem]:
    """Every problem with ``mapping`` against the provider's field catalogue."""
    problems: list[MappingProblem] = []
    sources = SOURCE_FIELDS[entity]
    targets = {f.path: f for f in support.fields}
    for target, rule in mapping.items():
        spec = targets.get(target)
        if spec is None:
            problems.append(MappingProblem(
                target, f"unknown {support.remote_kind} field {target!r}",
                "valid targets: " + ", ".join(sorted(targets))))
            continue
        if rule.source is not None and rule.source not in sources:
            problems.append(MappingProblem(
                target, f"unknown source field {rule.source!r} for {entity.value}",
                "valid sources: " + ", ".join(sorted(sources)), "from"))
            continue
        source_type = sources.get(rule.source) if rule.source is not None else None
        bad_transform = False
        for call in rule.transforms:
            transform = TRANSFORMS.get(call.name)
            if transform is None:
                problems.append(MappingProblem(
                    target, f"unknown transform {call.name!r}",
                    "valid transforms: " + ", ".join(sorted(TRANSFORMS)), "transforms"))
                bad_transform = True
                break
            unknown = set(call.params) - set(transform.params)
            if unknown:
                problems.append(MappingProblem(
                    target, f"transform {call.name!r} takes no parameter "
                    f"{', '.join(sorted(unknown))}",
                    f"parameters: {', '.join(transform.params) or 'none'}", "transforms"))
                bad_transform = True
            if (source_type is not None and transform.accepts is not None
                    and source_type not in transform.accepts):
                problems.append(MappingProblem(
                    target, f"transform {call.name!r} does not accept {source_type} values",
                    f"it accepts: {', '.join(sorted(transform.accepts))}", "transforms"))
                bad_transform = True
            if transform.output is not None:
                source_type = transform.output
        if bad_transform:
            continue
        out = _output_type(rule, entity)
        if out is not None and out not in _COMPATIBLE.get(spec.type, frozenset({spec.type})):
            problems.append(MappingProblem(
                target, f"type mismatch: {target!r} is {spec.type} but the value is {out}",
                _type_hint(out, spec.type), "from"))
    for required in support.required_fields:
        if required not in mapping:
            problems.append(MappingProblem(
                required, f"required {support.remote_kind} field {required!r} is not mapped",
                "map it in the template or in the integration's overrides"))
    return problems


def _type_hint(have: FieldType, want: FieldType) -> str:
    if have == "money" and want in ("decimal", "string"):
        return "add the transform minor_to_decimal"
    if have in ("decimal", "string") and want == "money":
        return "add the transform decimal_to_minor"
    if want == "string":
        return "add the transform to_string"
    return f"use a {want} source or a transform that produces {want}"
