"""Synthetic platform records and the outbound records the kit pushes.

Source records follow :data:`daemon.mapping.SOURCE_FIELDS`; they are mapped through the
provider's default template with :func:`daemon.mapping.apply_mapping`, exactly as the sync
engine does, and carry a content hash and a deterministic idempotency key.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from daemon.mapping import (
    SOURCE_FIELDS,
    EntityMapping,
    apply_mapping,
    content_hash,
    parse_entity_mapping,
    set_path,
)
from daemon.provider import Entity, FieldType, OutboundRecord, Provider, TemplateSpec

__all__ = [
    "default_template",
    "entity_mapping",
    "idempotency_key",
    "outbound_records",
    "source_record",
]

_KEY_NAMESPACE = uuid.UUID("5b0c3f9e-8d1a-4c55-9a57-2f1c0d6e7a10")
_EPOCH = datetime(2026, 3, 1, 19, 30, tzinfo=UTC)

_NAMED: Mapping[str, Any] = {
    "venue.id": "venue-kit",
    "venue.name": "Kit Hall",
    "venue.timezone": "Europe/London",
    "venue.type": "theatre",
    "event.status": "published",
    "event.category": "concert",
    "order.status": "paid",
    "order.ticket_type": "standard",
}


def _value(path: str, typ: FieldType, index: int, run: str) -> Any:
    if path in _NAMED:
        return _NAMED[path]
    leaf = path.rsplit(".", 1)[-1]
    if path.endswith(".id"):
        return f"{path.split('.', maxsplit=1)[0]}-{run}-{index}"
    match typ:
        case "email":
            return f"kit.{run}.{index}@example.com"
        case "money":
            return 1000 + 50 * index
        case "currency":
            return "USD"
        case "integer":
            return index + 1
        case "decimal":
            return f"{10 + index}.50"
        case "boolean":
            return index % 2 == 0
        case "datetime":
            return _EPOCH + timedelta(days=index)
        case "date":
            return (_EPOCH + timedelta(days=index)).date()
        case "list":
            return ["kit", f"tag-{index}"]
        case "object":
            return {}
        case _:
            pass
    if leaf == "phone":
        return f"+1415555{index:04d}"
    if leaf == "first_name":
        return "Kit"
    if leaf == "last_name":
        return f"Buyer {run} {index}"
    if leaf == "full_name":
        return f"Kit Buyer {run} {index}"
    if leaf == "url":
        return f"https://tickets.example.com/{run}/{index}"
    return f"{leaf.replace('_', ' ').title()} {run} {index}"


def source_record(entity: Entity, index: int, run: str = "kit") -> dict[str, Any]:
    """A nested platform record with every source field of ``entity`` filled in.

    Values are deterministic in ``(index, run)``; ids, emails and names are unique per
    index, so records never collide with one another.
    """
    record: dict[str, Any] = {}
    for path, typ in SOURCE_FIELDS[entity].items():
        set_path(record, path, _value(path, typ, index, run))
    return record


def default_template(provider: Provider) -> TemplateSpec | None:
    """The provider's default template (the one marked default, else the first)."""
    templates = list(provider.default_templates())
    for t in templates:
        if t.is_default:
            return t
    return templates[0] if templates else None


def entity_mapping(template: TemplateSpec, entity: Entity) -> EntityMapping | None:
    """The template's mapping for ``entity``, or None when it has none."""
    raw = template.mappings.get(entity.value)  # an Entity key matches too: it is a StrEnum
    if raw is None:
        return None
    return parse_entity_mapping(raw)


def idempotency_key(provider: str, entity: Entity, local_id: str, digest: str) -> str:
    """A key unique to one version of one record: the same version always gives the same key.

    A UUID string (36 characters), which fits every bundled provider's limit.
    """
    return str(uuid.uuid5(_KEY_NAMESPACE, f"{provider}:{entity.value}:{local_id}:{digest}"))


def outbound_records(
    provider: Provider, entity: Entity, count: int, *, run: str = "kit", start: int = 0,
    mapping: EntityMapping | None = None,
) -> list[OutboundRecord]:
    """``count`` records for ``entity`` mapped through the provider's default template."""
    if mapping is None:
        template = default_template(provider)
        if template is None:
            raise LookupError(f"provider {provider.name!r} ships no default template")
        mapping = entity_mapping(template, entity)
        if mapping is None:
            raise LookupError(
                f"the default template of {provider.name!r} has no {entity.value} mapping")
    out: list[OutboundRecord] = []
    for index in range(start, start + count):
        source = source_record(entity, index, run)
        payload = apply_mapping(mapping, source)
        digest = content_hash(payload)
        local_id = f"{entity.value}-{run}-{index}"
        out.append(OutboundRecord(
            entity=entity,
            local_id=local_id,
            payload=payload,
            content_hash=digest,
            idempotency_key=idempotency_key(provider.name, entity, local_id, digest),
        ))
    return out


def chunks(records: Sequence[OutboundRecord], size: int) -> list[list[OutboundRecord]]:
    """``records`` in consecutive chunks of at most ``size``, as the sync engine sends them."""
    return [list(records[i:i + size]) for i in range(0, len(records), max(size, 1))]
