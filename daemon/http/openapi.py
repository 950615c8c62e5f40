"""The OpenAPI 3.1 description of the admin API, served at ``/api/v1/openapi.json``."""

from __future__ import annotations

from typing import Any

from daemon import __version__
from daemon.provider import Entity

__all__ = ["OPENAPI"]

_TIME = {"type": ["string", "null"], "format": "date-time"}
#: A query value stored or compared as Postgres text, which cannot hold a NUL character.
_TEXT: dict[str, Any] = {"type": "string", "pattern": "^[^\\x00]*$"}

_ERROR = {"$ref": "#/components/schemas/Error"}


def _response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "401": _response("No acceptable bearer token", _ERROR),
    "403": _response("The token grants no admin role", _ERROR),
    "503": _response("Admin API authentication is not configured", _ERROR),
}
_VENUE = {"name": "venue", "in": "path", "required": True,
          "schema": {"type": "string", "format": "uuid"}}
_PROVIDER = {"name": "provider", "in": "path", "required": True, "schema": {"type": "string"}}
_PAUSE_ANSWER = {
    "type": "object", "required": ["integration", "changed"],
    "properties": {"integration": {"$ref": "#/components/schemas/Integration"},
                   "changed": {"type": "boolean"}},
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "syncd admin API",
        "version": __version__,
        "description": "Integrations, their health and sync history, sync now, pause and "
                       "resume, webhook events, inbound changes and their outcomes, the "
                       "queue and its dead letters, scoped by venue. A platform "
                       "admin's token sees every venue; a venue admin's only the venues it "
                       "lists; another venue's resource is answered as missing (404).",
    },
    "servers": [{"url": "/api/v1"}],
    "security": [{"bearer": []}],
    "paths": {
        "/integrations": {"get": {
            "operationId": "listIntegrations",
            "summary": "Integrations the caller may see, with their health",
            "parameters": [{"name": "venue", "in": "query", "required": False,
                            "schema": {"type": "string", "format": "uuid"}}],
            "responses": {
                "200": _response("Integrations", {
                    "type": "object", "required": ["integrations"],
                    "properties": {"integrations": {
                        "type": "array", "items": {"$ref": "#/components/schemas/Integration"}}},
                }),
                "400": _response("A venue that is not a UUID, or an unknown parameter",
                                 _ERROR),
                **_ERRORS,
            },
        }},
        "/venues/{venue}/integrations/{provider}": {"get": {
            "operationId": "getIntegration",
            "summary": "One integration and its last 20 syncs with per-record failures",
            "parameters": [_VENUE, _PROVIDER],
            "responses": {
                "200": _response("The integration", {
                    "type": "object", "required": ["integration", "recent_syncs"],
                    "properties": {
                        "integration": {"$ref": "#/components/schemas/Integration"},
                        "recent_syncs": {"type": "array",
                                         "items": {"$ref": "#/components/schemas/SyncLog"}},
                    },
                }),
                "400": _response("A query parameter the route does not take", _ERROR),
                "404": _response("No such integration (or not the caller's)", _ERROR),
                **_ERRORS,
            },
        }},
        "/venues/{venue}/integrations/{provider}/sync": {"post": {
            "operationId": "syncNow",
            "summary": "Queue a sync of the integration on the HIGH lane",
            "parameters": [_VENUE, _PROVIDER],
            "requestBody": {"required": False, "content": {"application/json": {"schema": {
                "type": "object",
                "properties": {
                    "entity": {"enum": ["all", *(e.value for e in Entity)],
                               "default": "all"},
                    "full": {"type": "boolean", "default": False,
                             "description": "A full check (reconcile) instead of changes"},
                },
            }}}},
            "responses": {
                "202": _response("Queued, or merged into a sync already pending", {
                    "type": "object", "required": ["job_id", "coalesced", "lane"],
                    "properties": {"job_id": {"type": ["integer", "null"]},
                                   "coalesced": {"type": "boolean"},
                                   "lane": {"const": "HIGH"}},
                }),
                "400": _response("A body that is not a valid request", _ERROR),
                "404": _response("No such integration (or not the caller's)", _ERROR),
                "409": _response("The integration is disabled or paused", _ERROR),
                **_ERRORS,
            },
        }},
        "/venues/{venue}/integrations/{provider}/pause": {"post": {
            "operationId": "pauseIntegration",
            "summary": "Pause the integration: no schedules fire, its queued jobs wait, sync "
                       "now is refused, until it is resumed",
            "parameters": [_VENUE, _PROVIDER],
            "requestBody": {"required": False, "content": {"application/json": {"schema": {
                "type": "object",
                "properties": {"reason": {**_TEXT, "maxLength": 500,
                                          "description": "Why, shown with the pause"}},
            }}}},
            "responses": {
                "200": _response("Paused (changed: false when it was paused already)",
                                 _PAUSE_ANSWER),
                "400": _response("A body that is not a valid request", _ERROR),
                "404": _response("No such integration (or not the caller's)", _ERROR),
                **_ERRORS,
            },
        }},
        "/venues/{venue}/integrations/{provider}/resume": {"post": {
            "operationId": "resumeIntegration",
            "summary": "Resume a paused integration: its queued jobs can run and its "
                       "schedules fire again",
            "parameters": [_VENUE, _PROVIDER],
            "requestBody": {"required": False, "content": {"application/json": {"schema": {
                "type": "object"}}}},
            "responses": {
                "200": _response("Resumed (changed: false when it was not paused)",
                                 _PAUSE_ANSWER),
                "400": _response("A body that is not a JSON object", _ERROR),
                "404": _response("No such integration (or not the caller's)", _ERROR),
                **_ERRORS,
            },
        }},
        "/webhooks": {"get": {
            "operationId": "listWebhookEvents",
            "summary": "Stored webhook events, newest first",
            "parameters": [
                {"name": "provider", "in": "query", "required": False,
                 "schema": _TEXT},
                # A string: an enum with no type let schemathesis draw a list or null for
                # it, which a query string cannot carry, and the request it sent was valid.
                {"name": "status", "in": "query", "required": False, "schema": {
                    "type": "string",
                    "enum": ["pending", "processing", "processed", "failed", "ignored"]}},
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 1000,
                            "default": 100}},
            ],
            "responses": {
                "200": _response("Events", {
                    "type": "object", "required": ["events"],
                    "properties": {"events": {
                        "type": "array",
                        "items": {"$ref": "#/components/schemas/WebhookEvent"}}},
                }),
                "400": _response("A bad status or limit, or an unknown parameter", _ERROR),
                **_ERRORS,
            },
        }},
        "/queue": {"get": {
            "operationId": "queueOverview",
            "summary": "Queue depth by lane and status, oldest pending age, running jobs "
                       "(platform admins only)",
            "responses": {
                "200": _response("The queue", {"$ref": "#/components/schemas/QueueOverview"}),
                "400": _response("A query parameter the route does not take", _ERROR),
                **_ERRORS,
            },
        }},
        "/dead-letters": {"get": {
            "operationId": "listDeadLetters",
            "summary": "Jobs that ran out of attempts, newest first",
            "parameters": [
                {"name": "provider", "in": "query", "required": False,
                 "schema": _TEXT},
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}},
            ],
            "responses": {
                "200": _response("Dead letters", {
                    "type": "object", "required": ["dead_letters"],
                    "properties": {"dead_letters": {
                        "type": "array", "items": {"$ref": "#/components/schemas/DeadLetter"}}},
                }),
                "400": _response("A bad limit, or an unknown parameter", _ERROR),
                **_ERRORS,
            },
        }},
        "/inbound-changes": {"get": {
            "operationId": "listInboundChanges",
            "summary": "Provider changes bound for the platform, newest first, each with its "
                       "outcome and reason",
            "parameters": [
                {"name": "provider", "in": "query", "required": False, "schema": _TEXT},
                {"name": "status", "in": "query", "required": False, "schema": {
                    "type": "string",
                    "enum": ["pending", "applied", "ignored", "failed", "dead_letter"]}},
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 1000,
                            "default": 100}},
            ],
            "responses": {
                "200": _response("Inbound changes", {
                    "type": "object", "required": ["changes"],
                    "properties": {"changes": {
                        "type": "array",
                        "items": {"$ref": "#/components/schemas/InboundChange"}}},
                }),
                "400": _response("A bad status or limit, or an unknown parameter", _ERROR),
                **_ERRORS,
            },
        }},
        "/dead-letters/{id}/replay": {"post": {
            "operationId": "replayDeadLetter",
            "summary": "Put a dead letter back on the queue with a fresh attempt budget",
            "parameters": [{"name": "id", "in": "path", "required": True,
                            "schema": {"type": "integer", "minimum": 1}}],
            "responses": {
                "200": _response("Replayed", {
                    "type": "object", "required": ["replayed"],
                    "properties": {"replayed": {"type": "array",
                                                "items": {"type": "integer"}}},
                }),
                "400": _response("A query parameter the route does not take", _ERROR),
                "404": _response("No such dead letter (or not the caller's)", _ERROR),
                **_ERRORS,
            },
        }},
    },
    "components": {
        "securitySchemes": {"bearer": {
            "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
            "description": "The platform's JWT (HS256 or RS256) with iss, aud and exp; claim "
                           "role platform_admin, or venue_admin with venues (a list of "
                           "venue ids).",
        }},
        "schemas": {
            "Error": {"type": "object", "required": ["error"],
                      "properties": {"error": {"type": "string"}}},
            "Integration": {
                "type": "object",
                "required": ["venue_id", "provider", "enabled", "paused", "status", "health"],
                "properties": {
                    "venue_id": {"type": "string", "format": "uuid"},
                    "venue_name": {"type": ["string", "null"]},
                    "provider": {"type": "string"},
                    "enabled": {"type": "boolean"},
                    "environment": {"enum": ["production", "sandbox"]},
                    "status": {"enum": ["disconnected", "connecting", "connected", "error",
                                        "suspended"]},
                    "health": {"enum": ["healthy", "degraded", "unhealthy", "unknown"]},
                    "last_sync_at": _TIME,
                    "last_error": {"type": ["string", "null"]},
                    "last_error_at": _TIME,
                    "failure_count": {"type": "integer", "minimum": 0},
                    "paused": {"type": "boolean"},
                    "paused_at": _TIME,
                    "paused_by": {"type": ["string", "null"]},
                    "pause_reason": {"type": ["string", "null"]},
                },
            },
            "SyncLog": {
                "type": "object",
                "required": ["id", "operation", "status", "started_at"],
                "properties": {
                    "id": {"type": "string", "format": "uuid"},
                    "job_id": {"type": ["integer", "null"]},
                    "operation": {"type": "string"},
                    "entity_type": {"type": ["string", "null"]},
                    "status": {"enum": ["running", "completed", "partial", "failed",
                                        "cancelled"]},
                    "success_count": {"type": "integer"},
                    "error_count": {"type": "integer"},
                    "skip_count": {"type": "integer"},
                    "duration_ms": {"type": ["integer", "null"]},
                    "api_calls_made": {"type": "integer"},
                    "errors": {"type": "array", "description": "Per-record failures"},
                    "started_at": {"type": "string", "format": "date-time"},
                    "completed_at": _TIME,
                },
            },
            "QueueOverview": {
                "type": "object", "required": ["depth", "oldest_pending_s", "due", "running"],
                "properties": {
                    "depth": {"type": "object", "additionalProperties": {
                        "type": "object", "additionalProperties": {"type": "integer"}}},
                    "oldest_pending_s": {"type": "object",
                                         "additionalProperties": {"type": ["number", "null"]}},
                    "due": {"type": "object", "additionalProperties": {"type": "integer"}},
                    "running": {"type": "array", "items": {"type": "object"}},
                },
            },
            "DeadLetter": {
                "type": "object",
                "required": ["id", "venue_id", "provider", "entity_type", "lane", "attempts"],
                "properties": {
                    "id": {"type": "integer"},
                    "venue_id": {"type": "string", "format": "uuid"},
                    "provider": {"type": "string"},
                    "entity_type": {"type": "string"},
                    "operation": {"type": "string"},
                    "lane": {"enum": ["CRITICAL", "HIGH", "NORMAL", "LOW"]},
                    "attempts": {"type": "integer"},
                    "max_attempts": {"type": "integer"},
                    "error_kind": {"type": ["string", "null"]},
                    "last_error": {"type": ["string", "null"]},
                    "completed_at": _TIME,
                },
            },
            "InboundChange": {
                "type": "object",
                "required": ["id", "venue_id", "provider", "entity_type", "remote_id",
                             "change", "source", "status", "received_at"],
                "properties": {
                    "id": {"type": "integer"},
                    "venue_id": {"type": "string", "format": "uuid"},
                    "provider": {"type": "string"},
                    "entity_type": {"type": "string"},
                    "remote_id": {"type": "string"},
                    "local_id": {"type": ["string", "null"]},
                    "change": {"type": "string", "enum": [
                        "created", "updated", "deleted", "unsubscribed", "subscribed",
                        "other"]},
                    "source": {"type": "string", "enum": ["webhook", "pull"]},
                    "status": {"type": "string", "enum": [
                        "pending", "applied", "ignored", "failed", "dead_letter"]},
                    "reason_code": {"type": ["string", "null"]},
                    "reason": {"type": ["string", "null"]},
                    "attempts": {"type": "integer", "minimum": 0},
                    "occurred_at": _TIME,
                    "received_at": {"type": "string", "format": "date-time"},
                    "processed_at": _TIME,
                },
            },
            "WebhookEvent": {
                "type": "object",
                "required": ["id", "provider", "status", "received_at"],
                "properties": {
                    "id": {"type": "string", "format": "uuid"},
                    "provider": {"type": "string"},
                    "venue_id": {"type": ["string", "null"], "format": "uuid"},
                    "event_type": {"type": "string"},
                    "external_id": {"type": "string"},
                    "status": {"enum": ["pending", "processing", "processed", "failed",
                                        "ignored"]},
                    "error": {"type": ["string", "null"]},
                    "retry_count": {"type": "integer"},
                    "received_at": {"type": "string", "format": "date-time"},
                    "processed_at": _TIME,
                },
            },
        },
    },
}
