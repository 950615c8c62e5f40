"""The provider contract: what a provider plugin declares and implements.

A plugin registers one or more :class:`Provider` objects through the
``syncd_register_providers`` hook (see :mod:`daemon.hookspecs`). A provider is the static
description of a service (its :class:`Capabilities`, webhook verification and parsing,
options model) plus a factory for :class:`ProviderClient` objects, one per connected account.

Everything that crosses the boundary between syncd and a plugin is defined here as frozen,
slotted dataclasses or Protocols, so plugins and the core evolve separately.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, runtime_checkable

import httpx
from pydantic import BaseModel

from daemon.errors import SyncdError

if TYPE_CHECKING:
    from aiohttp import web

    from daemon.locks import AccountLocks
    from daemon.ratelimit import LimiterRegistry
    from daemon.retry import RetryPolicy

_M = TypeVar("_M", bound=BaseModel)

__all__ = [
    "AuthKind",
    "Capabilities",
    "ClientContext",
    "ConnectionStatus",
    "Credentials",
    "DeliveryStatus",
    "Direction",
    "EmulatorSettings",
    "Entity",
    "EntitySupport",
    "ErrorKind",
    "FieldSpec",
    "FieldType",
    "InboundChange",
    "InboundDelivery",
    "InboundWrite",
    "LimitScope",
    "Linked",
    "OAuthSpec",
    "OutboundRecord",
    "Provider",
    "ProviderClient",
    "ProviderError",
    "RateLimit",
    "RecordResult",
    "TemplateSpec",
    "WebhookRequest",
    "WebhookVerdict",
    "adoption_conflicts",
    "inbound_values",
    "minor_units",
]


# --- vocabulary -----------------------------------------------------------------------------


class Entity(StrEnum):
    """The platform's entities. Events become products, buyers customers, sales transactions;
    an event's tickets left to sell become the provider's inventory count of its product."""

    PRODUCT = "product"
    CUSTOMER = "customer"
    TRANSACTION = "transaction"
    INVENTORY = "inventory"


class Direction(StrEnum):
    PUSH = "push"
    PULL = "pull"
    BOTH = "both"


class ErrorKind(StrEnum):
    """How a failure is handled: retry the job, refresh credentials, or record and move on."""

    RETRYABLE = "retryable"
    AUTH = "auth"
    PERMANENT = "permanent"


class AuthKind(StrEnum):
    OAUTH = "oauth"
    API_KEY = "api_key"


FieldType = Literal["string", "integer", "money", "decimal", "boolean", "email", "datetime",
                    "date", "currency", "list", "object"]


# --- capabilities ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One target field a mapping can write: a dotted path in the provider's record."""

    path: str
    type: FieldType = "string"
    required: bool = False
    description: str = ""
    max_length: int | None = None


@dataclass(frozen=True, slots=True)
class EntitySupport:
    """What a provider does with one entity."""

    entity: Entity
    directions: frozenset[Direction]
    #: Remote object kind, for people: "catalog item", "customer", "sales receipt".
    remote_kind: str
    #: Most records one push call may carry (1 where the provider has no batch endpoint).
    batch_size: int
    fields: tuple[FieldSpec, ...]
    #: What deleting a local record can do remotely.
    delete_policies: frozenset[Literal["delete", "archive", "leave"]] = frozenset({"leave"})
    notes: str = ""
    #: Once created, the remote record cannot be changed (a paid invoice, a paid order).
    #: The engine then never sends later local changes of a linked record: it reports them
    #: as "frozen" once and settles the link, instead of an update the provider must refuse
    #: on every run. The client should still refuse an update as a permanent failure.
    write_once: bool = False
    #: Records of this entity live on the remote record another entity made for the same
    #: local id (an inventory count on an event's catalog item): that entity is synced
    #: first, and the conformance kit's stand-alone push checks leave this one out.
    depends_on: Entity | None = None
    #: The inbound field catalogue: the fields a change of this entity reported by the
    #: provider (webhook or pull) carries in :attr:`InboundChange.fields`, as dotted paths
    #: with types. Inbound mappings (provider field -> platform field) are checked against
    #: it; empty means syncd cannot take this entity's values from the provider.
    inbound_fields: tuple[FieldSpec, ...] = ()

    def field(self, path: str) -> FieldSpec | None:
        return next((f for f in self.fields if f.path == path), None)

    def inbound_field(self, path: str) -> FieldSpec | None:
        return next((f for f in self.inbound_fields if f.path == path), None)

    @property
    def required_fields(self) -> tuple[str, ...]:
        return tuple(f.path for f in self.fields if f.required)


class LimitScope(StrEnum):
    """Whose calls a provider limit counts, and so where syncd enforces it.

    ``ACCOUNT`` and ``APP`` limits are shared by every venue whose integration uses the same
    provider account and by every replica, so syncd enforces them across processes (in
    Postgres). ``CONNECTION`` limits apply to each connected integration on its own; one
    integration runs in one process at a time, so they are enforced in that process only.
    """

    #: Every call made with the provider account, by any app (Mailchimp's 10 connections per
    #: user, Stripe's requests per account, QuickBooks' 500 requests a minute per realm).
    ACCOUNT = "account"
    #: This app's calls with one provider account (QuickBooks: 10 requests a second per realm
    #: and app). One syncd deployment is one app, so it is enforced like ``ACCOUNT``.
    APP = "app"
    #: Each connected integration (one set of credentials used by one venue) on its own.
    CONNECTION = "connection"


#: Names by which :attr:`RateLimit.scopes` refers to the two fixed limits; the window limits
#: of :attr:`RateLimit.extra` are referred to by their own keys.
RATE = "requests_per_second"
CONCURRENCY = "max_concurrency"


@dataclass(frozen=True, slots=True)
class RateLimit:
    """The limits syncd stays under for one provider account, as documented by the provider.

    ``requests_per_second`` (with ``burst``), ``max_concurrency`` and each window in
    ``extra`` named ``<scope>_per_<second|minute|hour|day>`` are enforced; :attr:`scopes`
    says per limit whether it is per account, per app or per connection (default: account).
    """

    requests_per_second: float
    burst: int = 1
    max_concurrency: int = 4
    #: Extra limits by scope, e.g. {"batch_per_minute": 40.0}; documented in the plugin.
    extra: Mapping[str, float] = field(default_factory=dict)
    #: Wait when a 429 carries no Retry-After (QuickBooks documents 60 s).
    default_retry_after: float = 1.0
    #: Whose calls each limit counts, by name: ``"requests_per_second"``,
    #: ``"max_concurrency"`` or an ``extra`` key. A limit not named is per account.
    scopes: Mapping[str, LimitScope] = field(default_factory=dict)

    def scope_of(self, name: str) -> LimitScope:
        """The scope of the limit called ``name`` (:data:`LimitScope.ACCOUNT` if unnamed)."""
        return self.scopes.get(name, LimitScope.ACCOUNT)


@dataclass(frozen=True, slots=True)
class OAuthSpec:
    """OAuth facts the credentials layer needs; all URLs are the production ones."""

    authorize_url: str
    token_url: str
    revoke_url: str | None
    scopes: tuple[str, ...]
    sandbox_authorize_url: str | None = None
    sandbox_token_url: str | None = None
    #: True when a refresh returns a new refresh token and invalidates the old one.
    rotates_refresh_token: bool = False
    pkce: bool = False
    access_token_ttl: timedelta | None = None
    refresh_token_ttl: timedelta | None = None
    #: Token endpoint client authentication: HTTP Basic or form fields.
    token_auth: Literal["basic", "form"] = "form"  # noqa: S105 - a method, not a secret
    #: Query parameters the callback carries besides code and state (QuickBooks: realmId).
    callback_params: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Capabilities:
    """Everything a provider declares about itself."""

    provider: str
    display_name: str
    entities: Mapping[Entity, EntitySupport]
    rate_limit: RateLimit
    auth: AuthKind
    oauth: OAuthSpec | None = None
    #: Names of the credential values an integration must reference, e.g. ("api_key",).
    credential_keys: tuple[str, ...] = ()
    webhooks: bool = True
    #: What the provider does not support, said plainly for `syncd plugins` and docs.
    unsupported: tuple[str, ...] = ()
    base_url: str = ""
    sandbox_base_url: str | None = None

    def supports(self, entity: Entity, direction: Direction) -> bool:
        support = self.entities.get(entity)
        if support is None:
            return False
        return direction in support.directions or Direction.BOTH in support.directions


@dataclass(frozen=True, slots=True)
class TemplateSpec:
    """A default field-mapping template a plugin ships (one per venue type or a default)."""

    name: str
    provider: str
    mappings: Mapping[str, Any]
    venue_type: str | None = None
    is_default: bool = False
    description: str = ""
    validation_rules: Mapping[str, Any] = field(default_factory=dict)


# --- records --------------------------------------------------------------------------------

#: ``await linked(entity, remote_ids)``: {remote id: local id} of the links holding them.
Linked = Callable[[Entity, Sequence[str]], Awaitable[Mapping[str, str]]]


async def adoption_conflicts(linked: Linked | None, entity: Entity,
                             candidates: Mapping[str, str]) -> dict[str, str]:
    """Which adoptions must be refused: {local id: reason}.

    ``candidates`` maps a local id to the remote id a client found for it (by e-mail or
    reference). A remote record linked to another local record is not this record's to
    write over: two local records share its e-mail (or reference). Candidates within the
    same push that name one remote record are refused too, but the first.
    """
    refused: dict[str, str] = {}
    if not candidates:
        return refused
    owners = dict(await linked(entity, sorted(set(candidates.values())))) if linked else {}
    for local_id, remote_id in candidates.items():
        owner = owners.get(remote_id)
        if owner is None:
            owners[remote_id] = local_id  # the first in this push takes it
        elif owner != local_id:
            refused[local_id] = (f"remote record {remote_id} matches this record (same e-mail "
                                 f"or reference) but is linked to local record {owner}; "
                                 "merge or tell the two records apart")
    return refused



@dataclass(frozen=True, slots=True)
class OutboundRecord:
    """One mapped record to push.

    ``remote_id`` is set when :mod:`entity_links` knows the remote record (update);
    otherwise the provider creates one or adopts an existing match (by email or reference id).
    ``idempotency_key`` (see :mod:`daemon.sync.keys`): a create is keyed by identity
    (integration, entity, local id), never by content, so a retry after a lost answer replays
    even when the record changed meanwhile; an update is keyed by the remote state it starts
    from and the new content, so a retry replays and a later edit back to an earlier version
    is applied, not replayed.

    ``attempted_at`` is set on a create when an earlier push of this record was started and
    never recorded a remote id (a crash, a lost lease, a step that failed after the provider
    committed): the provider may hold a remote record from that attempt, created from
    older content and with a key the provider may have forgotten (Stripe keeps keys 24
    hours). A client whose creates cannot be undone (paid sales) looks such a record up
    (a syncd marker in its metadata, a reference id) and finishes it instead of creating
    another. None means no earlier attempt: nothing to look up.
    """

    entity: Entity
    local_id: str
    payload: Mapping[str, Any]
    content_hash: str
    idempotency_key: str
    remote_id: str | None = None
    remote_version: str | None = None
    operation: Literal["upsert", "delete", "archive"] = "upsert"
    attempted_at: datetime | None = None
    #: The person this record describes withdrew their marketing consent at the provider
    #: (unsubscribed, or an address cleaned) and the platform has not opted them in again
    #: since. A client must not subscribe them, whatever the payload says (a new member gets
    #: a non-marketing status). See docs/sync.md, "Consent".
    consent_withdrawn: bool = False


@dataclass(frozen=True, slots=True)
class RecordResult:
    """The outcome of one record in a push. A rejected record fails alone."""

    local_id: str
    ok: bool
    remote_id: str | None = None
    remote_version: str | None = None
    #: "created", "updated", "adopted", "deleted", "archived", "unchanged" when ok.
    action: str = ""
    error_kind: ErrorKind | None = None
    error: str | None = None
    retry_after: float | None = None

    @classmethod
    def failure(cls, record: OutboundRecord, error: str,
                kind: ErrorKind = ErrorKind.PERMANENT) -> RecordResult:
        """``record`` failed alone, for ``error``; a permanent failure unless told otherwise."""
        return cls(record.local_id, ok=False, remote_id=record.remote_id,
                   error_kind=kind, error=error)


def inbound_values(catalogue: Sequence[FieldSpec], record: Any) -> dict[str, Any]:
    """The values of ``record`` (a provider object, nested) at each path of an inbound
    field catalogue, for :attr:`InboundChange.fields`; paths the record lacks are left out.
    A digit segment indexes a list."""
    out: dict[str, Any] = {}
    for spec in catalogue:
        node: Any = record
        found = True
        for part in spec.path.split("."):
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                found = False
                break
        if found and (node is None or isinstance(node, str | bool | int | float | list)):
            out[spec.path] = node
    return out


def minor_units(value: Any) -> int | None:
    """An amount in minor units from a mapped value (an int or a string of digits), or None.

    Booleans, decimals and anything else are refused: money travels as integers.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


@dataclass(frozen=True, slots=True)
class InboundChange:
    """A change at the provider, from a webhook or a pull."""

    provider: str
    entity: Entity | None
    remote_id: str
    change: Literal["created", "updated", "deleted", "unsubscribed", "subscribed", "other"]
    dedupe_key: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    occurred_at: datetime | None = None
    #: The provider account the change belongs to (realm id, merchant id, list id...).
    account_id: str | None = None
    event_type: str = ""
    #: The record's values after the change, keyed by the paths of the entity's inbound
    #: field catalogue (:attr:`EntitySupport.inbound_fields`), in the same shape whether the
    #: change came by webhook or by pull. None: the change carries no values (a webhook that
    #: only names the record); a later pull brings them.
    fields: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class InboundWrite:
    """Values syncd delivers to one platform record: what a sink receives.

    Generic over entities: ``entity_type`` names the platform entity (``customer``,
    ``product``, ``transaction``, or another a plugin adds), ``values`` maps platform fields
    (``customer.first_name``) to their new values, already transformed and allowed.
    ``expected_at`` is the record's change time as syncd read it before deciding: a sink
    that can should refuse (:attr:`DeliveryStatus.MOVED`) when the record changed since, and
    syncd reads and decides again.
    """

    venue_id: str
    entity_type: str
    local_id: str
    values: Mapping[str, Any]
    #: When the change happened at the provider (None: unknown).
    changed_at: datetime | None
    provider: str
    #: The ``inbound_changes`` row delivered (None for a delivery not from that table).
    change_id: int | None = None
    expected_at: datetime | None = None


class DeliveryStatus(StrEnum):
    """How a sink's delivery ended."""

    #: The values are in the platform now.
    APPLIED = "applied"
    #: The record changed since syncd read it: nothing was written; syncd decides again.
    MOVED = "moved"
    #: The record does not exist or is deleted: nothing was written.
    GONE = "gone"


@dataclass(frozen=True, slots=True)
class InboundDelivery:
    """A sink's answer for one :class:`InboundWrite`. ``detail`` is safe to log."""

    status: DeliveryStatus
    detail: str = ""
    #: The record's change time after the write, where the sink knows it.
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ConnectionStatus:
    ok: bool
    detail: str = ""
    account_id: str | None = None
    latency_ms: float | None = None


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """A webhook delivery as received: raw bytes are what signatures cover."""

    headers: Mapping[str, str]
    body: bytes
    #: The notification URL exactly as registered (Square signs it).
    url: str
    received_at: datetime


@dataclass(frozen=True, slots=True)
class WebhookVerdict:
    """Whether a delivery is authentic. ``reason`` is safe to log; it never holds the secret."""

    ok: bool
    reason: str = ""
    event_id: str | None = None


class ProviderError(SyncdError):
    """A classified provider failure for a whole call (not one record)."""

    def __init__(
        self,
        message: str,
        kind: ErrorKind,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        #: Tries of the call this error ended (the HTTP layer's retries included): the
        #: engine counts them against the same budget (see :mod:`daemon.retry`).
        self.attempts = attempts
        self.kind = kind
        self.status = status
        self.retry_after = retry_after


# --- runtime --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Credentials:
    """Resolved secrets for one account. ``repr`` never shows the secret values.

    Secrets are ``access_token``, ``api_key`` and ``secrets`` (any other credential key the
    provider declares, by key). ``account`` holds only non-secret facts and may appear in
    logs and messages. A webhook signing secret is not here: pushes never need it, and the
    webhook endpoint asks the credential store for it on its own.
    """

    access_token: str | None = field(default=None, repr=False)
    api_key: str | None = field(default=None, repr=False)
    #: Non-secret account facts: realm_id, dc (Mailchimp data centre), list_id, account.
    account: Mapping[str, str] = field(default_factory=dict)
    expires_at: datetime | None = None
    #: Other secret credential keys the provider declares (``credential_keys``), by key.
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(slots=True)
class ClientContext:
    """What a :class:`ProviderClient` is built from.

    ``http`` is shared and owned by the caller. ``base_url`` overrides the provider's host
    (emulators, sandboxes). ``refresh`` asks the credential store for fresh credentials after
    an auth error; it returns None when there is nothing to refresh.

    ``linked`` answers which of some remote ids syncd already links, and to which local id
    (``await linked(entity, remote_ids) -> {remote_id: local_id}``). A client calls it before
    adopting a remote record it found by e-mail or reference, and adopts only one that is
    not linked to another local record: writing this record's data over another record's
    remote copy is refused as this record's failure. None (tests, the conformance kit):
    nothing is linked.

    ``limiters`` is the process's :class:`~daemon.ratelimit.LimiterRegistry`: a client takes
    its account's limiter from it (``registry_for(ctx).get(...)``), so every client of an
    account, and with a shared registry every replica, stays inside the account's limits
    together. None (tests, the conformance kit): the client keeps a limiter of its own.

    ``retry`` is the process's :class:`~daemon.retry.RetryPolicy`: a client on
    :class:`~daemon.httpclient.ProviderHTTP` passes it on, so its calls' tries count against
    the one budget the engine and queue share. ``locks`` are the process's per-account locks
    (:class:`~daemon.locks.AccountLocks`); None: the client's own.
    """

    venue_id: str
    credentials: Credentials
    options: BaseModel | Mapping[str, Any]
    http: httpx.AsyncClient
    base_url: str | None = None
    environment: Literal["production", "sandbox"] = "production"
    refresh: Any = None  # Callable[[], Awaitable[Credentials | None]]
    linked: Linked | None = None
    limiters: LimiterRegistry | None = None
    retry: RetryPolicy | None = None
    locks: AccountLocks | None = None

    def options_as(self, model: type[_M]) -> _M:
        """The integration's options as the provider's options model."""
        if isinstance(self.options, model):
            return self.options
        raw = self.options.model_dump() if isinstance(self.options, BaseModel) else self.options
        return model.model_validate(dict(raw))

    def base_url_for(self, capabilities: Capabilities) -> str:
        """The override if set, else the sandbox or production host the provider declares."""
        if self.base_url:
            return self.base_url
        if self.environment == "sandbox" and capabilities.sandbox_base_url:
            return capabilities.sandbox_base_url
        return capabilities.base_url


@runtime_checkable
class ProviderClient(Protocol):
    """One connected provider account."""

    async def push(self, entity: Entity, records: Sequence[OutboundRecord]) -> list[RecordResult]:
        """Create, update or adopt ``records`` (at most the entity's batch size).

        Returns one result per record in the same order. Raises :class:`ProviderError` only
        when the whole call failed (auth, rate limit exhausted, transport).
        """
        ...

    def pull(self, entity: Entity, since: datetime | None) -> AsyncIterator[InboundChange]:
        """Changes at the provider since ``since`` (pagination handled inside)."""
        ...

    async def test_connection(self) -> ConnectionStatus:
        """A cheap authenticated call that proves the credentials work."""
        ...

    @property
    def api_calls(self) -> int:
        """HTTP requests made so far by this client (for costs and sync logs)."""
        ...

    async def aclose(self) -> None:
        """Release what the client holds (not the shared HTTP client)."""
        ...


@dataclass(frozen=True, slots=True)
class EmulatorSettings:
    """Knobs every emulator honours. Rates are per-request probabilities in [0, 1]."""

    latency: float = 0.0
    error_rate: float = 0.0
    rate_limit_storm: float = 0.0
    timeout_rate: float = 0.0
    reset_rate: float = 0.0
    #: Apply the request, then drop the connection before answering: a client that crashed
    #: (or lost the response) after the provider committed. Retried writes must not duplicate.
    reset_after_commit_rate: float = 0.0
    #: Seconds a request hit by ``timeout_rate`` hangs before its connection is dropped.
    hang_seconds: float = 120.0
    #: ``Retry-After`` (seconds) of the 429s ``rate_limit_storm`` answers, for providers whose
    #: 429 carries one: a storm with a long Retry-After.
    storm_retry_after: float = 1.0
    #: Share of requests answered only after ``slow_seconds`` more (on top of ``latency``).
    slow_rate: float = 0.0
    slow_seconds: float = 2.0
    #: Share of requests handled (and committed), then answered with a malformed body: the
    #: status the handler chose with a truncated JSON document. Retried writes must not
    #: duplicate, and the client must not take the garbage for an answer.
    malformed_rate: float = 0.0
    #: Enforce the provider's documented rate limits (429 with its body and headers).
    enforce_rate_limits: bool = True
    #: Multiply the documented limits (tests may tighten them to provoke 429s quickly).
    rate_limit_scale: float = 1.0
    seed: int | None = None
    webhook_url: str | None = None
    webhook_secret: str = "emulator-webhook-secret"  # noqa: S105 - a test fixture value
    access_token_ttl: float | None = None
    #: Refuse every request the provider's published API description refuses (unknown,
    #: missing or malformed parameters and fields), as the real service does. False lets
    #: them through, for exploring.
    strict: bool = True


@runtime_checkable
class Provider(Protocol):
    """A provider plugin's entry object. ``name`` is the key used in config and URLs."""

    name: str
    capabilities: Capabilities

    def options_model(self) -> type[BaseModel]:
        """The pydantic model of this provider's ``options:`` block in venue YAML."""
        ...

    def default_templates(self) -> Sequence[TemplateSpec]:
        """Mapping templates shipped with the plugin (a default and per venue type)."""
        ...

    def client(self, ctx: ClientContext) -> ProviderClient:
        """A client for one account."""
        ...

    def verify_webhook(self, request: WebhookRequest, secret: str) -> WebhookVerdict:
        """Check a delivery's signature exactly as the provider specifies. Never raises."""
        ...

    def parse_webhook(self, request: WebhookRequest) -> list[InboundChange]:
        """Normalise a verified delivery into inbound changes. Never raises on bad input:
        returns an empty list for payloads it does not understand."""
        ...

    def emulator(self, settings: EmulatorSettings) -> web.Application:
        """A local aiohttp app that behaves like the real service, for tests and demos."""
        ...
