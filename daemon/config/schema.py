"""JSON Schema of the two config file kinds, for editors and CI."""

from __future__ import annotations

from typing import Any

from daemon.config.models import TemplateFile, VenueFile

__all__ = ["json_schemas"]

_RULE = {
    "anyOf": [
        {"type": "string", "description": "Source path, e.g. customer.email."},
        {"$ref": "#/$defs/FieldRule"},
    ]
}


_INBOUND_RULE = {
    "anyOf": [
        {"type": "string", "description": "Provider field, e.g. merge_fields.FNAME."},
        {"$ref": "#/$defs/InboundRule"},
    ]
}


def _with_short_rules(schema: dict[str, Any]) -> dict[str, Any]:
    """Allow a mapping rule's short form (a plain source path) wherever a rule goes."""

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if node.get("$ref") == "#/$defs/FieldRule" and len(node) == 1:
                return dict(_RULE)
            if node.get("$ref") == "#/$defs/InboundRule" and len(node) == 1:
                return dict(_INBOUND_RULE)
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    out: dict[str, Any] = walk(schema)
    rule = out.get("$defs", {}).get("FieldRule")
    if rule is not None:
        transform = {"anyOf": [{"type": "string", "description": "A transform name."},
                               {"$ref": "#/$defs/TransformCall"}]}
        rule["properties"]["transforms"]["items"] = transform
        rule["properties"]["transform"] = transform
    inbound = out.get("$defs", {}).get("InboundRule")
    if inbound is not None:
        transform = {"anyOf": [{"type": "string", "description": "A transform name."},
                               {"$ref": "#/$defs/TransformCall"}]}
        inbound["properties"]["transforms"]["items"] = transform
        inbound["properties"]["transform"] = transform
    return out


def json_schemas() -> dict[str, dict[str, Any]]:
    """``{"venue": schema, "template": schema}`` (JSON Schema 2020-12)."""
    out: dict[str, dict[str, Any]] = {}
    for kind, model in (("venue", VenueFile), ("template", TemplateFile)):
        schema = _with_short_rules(model.model_json_schema(by_alias=True))
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["title"] = f"syncd {kind} file"
        out[kind] = schema
    return out
