"""The conformance checks. Each raises :class:`AssertionError` with a plain reason.

They take a running :class:`~daemon.testing.kit.KitSession` (or just the provider, for the
static checks) so they can be used from any test runner; :class:`ProviderConformance` wraps
each in its own pytest test.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode

from aiohttp import web
from pydantic import BaseModel

from daemon.mapping import parse_entity_mapping, validate_mapping
from daemon.payloads import MAX_DEPTH
from daemon.provider import (
    AuthKind,
    Credentials,
    Direction,
    Entity,
    ErrorKind,
    OutboundRecord,
    Provider,
    ProviderClient,
    ProviderError,
    RecordResult,
    WebhookRequest,
)
from daemon.ratelimit import Clock, MonotonicClock
from daemon.testing.emulator import EmulatorServer
from daemon.testing.kit._records import chunks, default_template, outbound_records
from daemon.testing.kit._session import KitSession

__all__ = [
    "GARBAGE_ANSWERS",
    "Garbage",
    "WebhookShape",
    "check_auth_failure",
    "check_batching",
    "check_capabilities",
    "check_crash_recovery",
    "check_default_templates",
    "check_idempotent_retry",
    "check_malformed_answers",
    "check_rate_limit_429",
    "check_webhook_deep_bodies",
    "check_webhook_garbage",
    "check_webhook_parse",
    "check_webhook_refusals",
    "check_webhook_verifies",
    "check_write_once",
    "garbage_server",
    "push_until_done",
    "pushable_entities",
    "signature_header",
    "write_once_entities",
]

_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Where kit deliveries claim to be sent (Square signs the notification URL).
WEBHOOK_URL = "https://syncd.example.com/webhooks/{provider}"


def pushable_entities(provider: Provider) -> list[Entity]:
    """Entities the provider can push on their own, in declaration order (not those that
    live on another entity's remote record: ``EntitySupport.depends_on``)."""
    return [e for e, support in provider.capabilities.entities.items()
            if provider.capabilities.supports(e, Direction.PUSH) and support.depends_on is None]


def write_once_entities(provider: Provider) -> list[Entity]:
    """Pushable entities the provider declares write-once, in declaration order."""
    return [e for e in pushable_entities(provider)
            if provider.capabilities.entities[e].write_once]


def _batch(provider: Provider, entity: Entity) -> int:
    return provider.capabilities.entities[entity].batch_size


# --- static checks --------------------------------------------------------------------------


def check_capabilities(provider: Provider) -> None:
    """Declared capabilities are coherent."""
    caps = provider.capabilities
    assert caps.provider == provider.name, (
        f"capabilities.provider is {caps.provider!r} but the provider is named "
        f"{provider.name!r}")
    assert caps.entities, "the provider declares no entities"
    for entity, support in caps.entities.items():
        where = f"{provider.name} {entity.value}"
        assert support.entity == entity, f"{where}: EntitySupport.entity is {support.entity}"
        assert support.batch_size > 0, f"{where}: batch_size must be > 0"
        assert support.directions, f"{where}: no directions"
        assert support.fields, f"{where}: the field catalogue is empty"
        paths = [f.path for f in support.fields]
        assert len(paths) == len(set(paths)), f"{where}: duplicate field paths"
        assert all(p.strip() for p in paths), f"{where}: an empty field path"
        for required in support.required_fields:
            assert support.field(required) is not None, f"{where}: {required} is not a field"
    limit = caps.rate_limit
    assert limit.requests_per_second > 0, "rate_limit.requests_per_second must be > 0"
    assert limit.burst >= 1, "rate_limit.burst must be >= 1"
    assert limit.max_concurrency >= 1, "rate_limit.max_concurrency must be >= 1"
    if caps.auth is AuthKind.OAUTH:
        assert caps.oauth is not None, "an OAuth provider must declare its OAuthSpec"
    model = provider.options_model()
    assert isinstance(model, type), "options_model() must return a class"
    assert issubclass(model, BaseModel), "options_model() must return a pydantic model class"


def check_default_templates(provider: Provider) -> None:
    """Templates map every pushable entity and validate against the field catalogue."""
    templates = list(provider.default_templates())
    assert templates, "the provider ships no mapping template"
    default = default_template(provider)
    assert default is not None
    known = {e.value for e in Entity}
    for template in templates:
        assert template.provider == provider.name, (
            f"template {template.name!r} names provider {template.provider!r}")
        for key, raw in template.mappings.items():
            name = key.value if isinstance(key, Entity) else str(key)
            assert name in known, f"template {template.name!r}: unknown entity {name!r}"
            entity = Entity(name)
            support = provider.capabilities.entities.get(entity)
            assert support is not None, (
                f"template {template.name!r} maps {name}, which the provider does not declare")
            problems = validate_mapping(entity, parse_entity_mapping(raw), support)
            assert not problems, f"template {template.name!r} {name}: " + "; ".join(
                f"{p.target}: {p.message}" for p in problems)
    for entity in pushable_entities(provider):
        assert entity.value in default.mappings or entity in default.mappings, (
            f"the default template {default.name!r} has no {entity.value} mapping")


# --- pushing like the sync engine does --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PushOutcome:
    results: dict[str, RecordResult]
    attempts: int
    provider_errors: tuple[str, ...]


async def push_until_done(
    client: ProviderClient, entity: Entity, records: Sequence[OutboundRecord], batch_size: int,
    *, attempts: int = 1, max_wait: float = 2.0, clock: Clock | None = None,
) -> PushOutcome:
    """Push in chunks of ``batch_size``; re-push retryable failures up to ``attempts`` times.

    A retry sends the same records (same idempotency keys, still unlinked), exactly as the
    engine retries a job whose results were lost. Between rounds it waits the longest
    ``Retry-After`` it was given (at most ``max_wait``) on ``clock`` (the checks pass their
    session's; default real time).
    """
    clock = clock if clock is not None else MonotonicClock()
    results: dict[str, RecordResult] = {}
    errors: list[str] = []
    pending = list(records)
    used = 0
    for used in range(1, attempts + 1):  # noqa: B007 - reported as the attempts used
        wait = 0.0
        failed: list[OutboundRecord] = []
        for chunk in chunks(pending, batch_size):
            try:
                got = await client.push(entity, chunk)
            except ProviderError as exc:
                errors.append(f"{exc.kind.value}: {exc}")
                if exc.kind is not ErrorKind.RETRYABLE:
                    raise AssertionError(
                        f"push of {len(chunk)} {entity.value} records failed "
                        f"({exc.kind.value}): {exc}") from exc
                wait = max(wait, exc.retry_after or 0.0)
                failed.extend(chunk)
                continue
            assert len(got) == len(chunk), (
                f"push returned {len(got)} results for {len(chunk)} records")
            for record, result in zip(chunk, got, strict=True):
                assert result.local_id == record.local_id, (
                    f"results out of order: {result.local_id!r} for {record.local_id!r}")
                results[record.local_id] = result
                if not result.ok:
                    if result.error_kind is not ErrorKind.RETRYABLE:
                        raise AssertionError(
                            f"record {record.local_id} failed ({result.error_kind}): "
                            f"{result.error}")
                    wait = max(wait, result.retry_after or 0.0)
                    failed.append(record)
        pending = failed
        if not pending:
            break
        await clock.sleep(min(max(wait, 0.05), max_wait))
    return PushOutcome(results, used, tuple(errors))


def _assert_all_pushed(outcome: PushOutcome, records: Sequence[OutboundRecord]) -> list[str]:
    missing = [r.local_id for r in records
               if r.local_id not in outcome.results or not outcome.results[r.local_id].ok]
    assert not missing, (
        f"{len(missing)} of {len(records)} records not pushed after {outcome.attempts} "
        f"attempts (e.g. {missing[:3]}); provider errors: {list(outcome.provider_errors[-3:])}; "
        f"last results: {[outcome.results.get(m) for m in missing[:2]]}")
    ids = [outcome.results[r.local_id].remote_id for r in records]
    assert all(ids), "a successful result has no remote_id"
    assert len(set(ids)) == len(ids), "two records were given the same remote id"
    return [i for i in ids if i]


def _writes(log: list[dict[str, object]]) -> list[dict[str, object]]:
    return [r for r in log if str(r.get("method", "")).upper() in _WRITE_METHODS]


# --- checks against the emulator --------------------------------------------------------------


async def check_batching(session: KitSession, entity: Entity) -> None:
    """``batch_size * 2 + 1`` records go out in writes of at most the batch size, full
    batches are used, and all of them arrive."""
    provider = session.provider
    size = _batch(provider, entity)
    records = outbound_records(provider, entity, size * 2 + 1, run="batch")
    await session.configure(enforce_rate_limits=False)
    client = await session.client()
    outcome = await push_until_done(client, entity, records, size, clock=session.clock)
    _assert_all_pushed(outcome, records)
    log = await session.requests()
    sizes = [int(str(r["batch_size"])) for r in _writes(log) if r.get("batch_size") is not None]
    assert all(s <= size for s in sizes), (
        f"a write carried {max(sizes)} records; the declared batch size is {size}")
    if size > 1:
        full = sum(1 for s in sizes if s == size)
        assert full >= 2, (
            f"{len(records)} records in chunks of {size} should make at least 2 full batch "
            f"writes; the emulator logged batch sizes {sizes[:10]}")
    stored = await session.count(entity.value)
    assert stored == len(records), f"the emulator holds {stored} {entity.value} records, " \
        f"expected {len(records)}"


async def check_idempotent_retry(session: KitSession, entity: Entity) -> None:
    """Pushing the same records again without links creates nothing new."""
    provider = session.provider
    size = _batch(provider, entity)
    records = outbound_records(provider, entity, min(size, 3) + 1, run="again")
    client = await session.client()
    first = await push_until_done(client, entity, records, size, attempts=5,
                                  clock=session.clock)
    ids = _assert_all_pushed(first, records)
    before = await session.count(entity.value)
    assert before == len(records), f"{before} {entity.value} records after one push of " \
        f"{len(records)}"
    second = await push_until_done(client, entity, records, size, attempts=5,
                                   clock=session.clock)
    again = _assert_all_pushed(second, records)
    after = await session.count(entity.value)
    assert after == before, f"pushing the same records twice left {after} {entity.value} " \
        f"records, expected {before}"
    assert again == ids, "the second push reported different remote ids for the same records"


async def check_crash_recovery(session: KitSession, entity: Entity) -> None:
    """A write the provider committed but whose response was lost is not duplicated when
    the same records are retried with the same idempotency keys."""
    provider = session.provider
    size = _batch(provider, entity)
    records = outbound_records(provider, entity, min(size, 3), run="crash")
    client = await session.client()
    pending = list(records)
    results: dict[str, RecordResult] = {}
    dropped = False
    for attempt in range(12):
        # The first attempt loses every response; later ones half of them, until a committed
        # write has been lost (reads may come first); then none.
        rate = 0.0 if dropped or attempt >= 10 else (1.0 if attempt == 0 else 0.5)
        await session.configure(reset_after_commit_rate=rate)
        outcome = await push_until_done(client, entity, pending, size, clock=session.clock)
        results.update({k: v for k, v in outcome.results.items() if v.ok})
        pending = [r for r in records if r.local_id not in results]
        log = await session.requests()
        # The handler ran (the write was applied) and the response never left.
        dropped = dropped or any(r.get("fault") == "reset_after_commit" for r in _writes(log))
        if not pending:
            break
    await session.configure(reset_after_commit_rate=0.0)
    assert dropped, ("no committed write lost its response while the emulator dropped "
                     "connections, so the crash path was not exercised")
    assert not pending, f"records never pushed after the crash: {[r.local_id for r in pending]}"
    stored = await session.count(entity.value)
    assert stored == len(records), (
        f"after a crash and retry the emulator holds {stored} {entity.value} records, "
        f"expected exactly {len(records)}")


async def check_rate_limit_429(session: KitSession, entity: Entity, *,
                               storm: float = 0.3, max_wait: float = 2.0) -> None:
    """Under a 429 storm every record still ends up pushed, once."""
    provider = session.provider
    size = min(_batch(provider, entity), 3)
    records = outbound_records(provider, entity, size * 3, run="storm")
    await session.configure(rate_limit_storm=storm, seed=4)
    client = await session.client()
    outcome = await push_until_done(client, entity, records, size, attempts=40,
                                    max_wait=max_wait, clock=session.clock)
    await session.configure(rate_limit_storm=0.0)
    _assert_all_pushed(outcome, records)
    log = await session.requests()
    assert any(r.get("status") == 429 for r in log), "no request was answered 429"
    stored = await session.count(entity.value)
    assert stored == len(records), (
        f"after the 429 storm the emulator holds {stored} {entity.value} records, "
        f"expected {len(records)}")


async def check_write_once(session: KitSession, entity: Entity) -> None:
    """A write-once entity's client refuses an update of a record it created: a permanent
    failure of that record, with nothing written.

    The sync engine never sends such updates (it reports the records as frozen); the
    client's refusal is the defence for a caller that does.
    """
    provider = session.provider
    support = provider.capabilities.entities[entity]
    where = f"{provider.name} {entity.value}"
    assert support.write_once, f"{where} is not declared write_once"
    (record,) = outbound_records(provider, entity, 1, run="once")
    client = await session.client()
    created = await push_until_done(client, entity, [record], 1, attempts=5,
                                    clock=session.clock)
    (remote_id,) = _assert_all_pushed(created, [record])
    stored = await session.count(entity.value)
    (other,) = outbound_records(provider, entity, 1, run="once-changed")
    changed = dataclasses.replace(other, local_id=record.local_id, remote_id=remote_id)
    writes = len(_writes(await session.requests()))
    results = await client.push(entity, [changed])
    assert len(results) == 1, f"push returned {len(results)} results for one record"
    (result,) = results
    assert not result.ok, (
        f"{where}: an update of a write-once {support.remote_kind} was accepted "
        f"({result.action or 'ok'}); the client must refuse it")
    assert result.error_kind is ErrorKind.PERMANENT, (
        f"{where}: an update of a write-once {support.remote_kind} was refused as "
        f"{result.error_kind}, expected permanent (no retry can succeed)")
    assert result.error, f"{where}: the refusal gives no reason"
    assert len(_writes(await session.requests())) == writes, (
        f"{where}: refusing an update of a write-once {support.remote_kind} wrote to the "
        "provider")
    assert await session.count(entity.value) == stored, (
        f"{where}: refusing an update changed the number of stored records")


def _corrupt(secret: str) -> str:
    """A wrong secret of the same shape (keeps a ``sk_test_`` prefix or a ``-us6`` suffix)."""
    match = re.fullmatch(r"(.*?_)?([^_]*?)(-[a-z]{2}\d+)?", secret)
    prefix, body, suffix = ("", secret, "") if match is None else (
        match.group(1) or "", match.group(2), match.group(3) or "")
    return prefix + ("x" * max(len(body), 8)) + suffix


async def check_auth_failure(session: KitSession, entity: Entity) -> None:
    """Bad credentials are classified as :attr:`ErrorKind.AUTH`, not retried as transient."""
    provider = session.provider
    good = await session.credentials()
    bad = Credentials(
        access_token=_corrupt(good.access_token) if good.access_token else None,
        api_key=_corrupt(good.api_key) if good.api_key else None,
        account=good.account,
    )
    client = await session.client(bad)
    records = outbound_records(provider, entity, 1, run="auth")
    kind: ErrorKind | None
    try:
        results = await client.push(entity, records)
    except ProviderError as exc:
        kind = exc.kind
    else:
        assert len(results) == 1, f"{len(results)} results for one record"
        assert not results[0].ok, "a push with bad credentials succeeded"
        kind = results[0].error_kind
    assert kind is ErrorKind.AUTH, f"bad credentials were classified as {kind}, expected auth"
    try:
        status = await client.test_connection()
    except ProviderError as exc:
        kind = exc.kind
    else:
        assert not status.ok, "test_connection reported ok with bad credentials"
        kind = ErrorKind.AUTH
    assert kind is ErrorKind.AUTH, f"test_connection raised {kind}, expected auth"
    assert await session.count(entity.value) == 0, "a record was stored with bad credentials"


# --- malformed answers ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Garbage:
    """One malformed answer: a status and a body, always labelled ``application/json``."""

    name: str
    status: int
    body: bytes


#: The answers every client must survive: proxies' HTML pages, JSON of the wrong kind, empty
#: bodies, the usual envelope keys with values of the wrong type, and an error status whose
#: body is not the provider's error format.
GARBAGE_ANSWERS: tuple[Garbage, ...] = (
    Garbage("html", 200, b"<html>gateway</html>"),
    Garbage("list", 200, b"[1, 2, 3]"),
    Garbage("object", 200, b'{"unexpected": true}'),
    Garbage("empty", 200, b""),
    Garbage("wrong-types", 200, json.dumps({
        "id": {"nested": []}, "object": [], "data": "none", "items": 5, "results": "x",
        "errors": {"x": 1}, "error": [], "customer": "x", "customers": {}, "objects": "x",
        "catalog_object": 7, "id_mappings": "x", "order": [], "new_members": "x",
        "updated_members": 1, "Fault": "x", "BatchItemResponse": {"x": 1},
        "QueryResponse": [], "Customer": "x", "Item": 3, "SalesReceipt": [],
    }).encode()),
    Garbage("error-list", 400, b'[{"errors": 1}, null]'),
    Garbage("error-html", 400, b"<html>bad request</html>"),
)


@asynccontextmanager
async def garbage_server(answer: Garbage) -> AsyncIterator[tuple[str, list[str]]]:
    """A server on 127.0.0.1 giving ``answer`` to every request: (url, requests seen)."""
    seen: list[str] = []

    async def reply(request: web.Request) -> web.Response:
        seen.append(f"{request.method} {request.path}")
        await request.read()
        return web.Response(status=answer.status, body=answer.body,
                            content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", reply)
    async with EmulatorServer(app) as server:
        yield server.url, seen


async def check_malformed_answers(session: KitSession, entity: Entity, answer: Garbage, *,
                                  timeout: float = 60.0) -> None:
    """A push answered with garbage is a classified failure, never a crash or a false success.

    The client is built as for the other checks (the emulator's credentials and account
    options) but pointed at a server giving ``answer`` to everything. The push must raise a
    retryable or permanent :class:`ProviderError` (garbage is no reason to ask for new
    credentials), or return one result per record, in order, each either a failure with a
    retryable or permanent kind or (on a 2xx answer only) a success naming its remote id.
    """
    provider = session.provider
    where = f"{provider.name} {entity.value} answered {answer.name}"
    records = outbound_records(provider, entity, min(_batch(provider, entity), 2),
                              run="garbage")
    failure: ProviderError | None = None
    results: list[RecordResult] = []
    async with garbage_server(answer) as (url, seen):
        client = await session.client(base_url=url)
        try:
            results = await asyncio.wait_for(client.push(entity, records), timeout)
        except ProviderError as exc:
            failure = exc
        except TimeoutError:
            raise AssertionError(f"{where}: the push did not finish within {timeout:g}s "
                                 f"({len(seen)} requests)") from None
        except Exception as exc:
            raise AssertionError(
                f"{where}: the push raised {type(exc).__name__}: {exc!s:.200}; a malformed "
                "answer must become a ProviderError or failed records") from exc
    assert seen, f"{where}: the client never called the server, so nothing was checked"
    if failure is not None:
        kind = failure.kind
        assert isinstance(kind, ErrorKind), f"{where}: ProviderError.kind is {kind!r}"
        assert kind in (ErrorKind.RETRYABLE, ErrorKind.PERMANENT), (
            f"{where}: the push failed as {kind.value}; garbage is retryable or permanent "
            f"({failure})")
        return
    assert isinstance(results, list), f"{where}: push returned {type(results).__name__}"
    assert len(results) == len(records), (
        f"{where}: push returned {len(results)} results for {len(records)} records")
    for record, result in zip(records, results, strict=True):
        assert isinstance(result, RecordResult), (
            f"{where}: push returned a {type(result).__name__}, not a RecordResult")
        assert result.local_id == record.local_id, (
            f"{where}: results out of order: {result.local_id!r} for {record.local_id!r}")
        if result.ok:
            assert answer.status < 300, (
                f"{where}: record {record.local_id} reported ok on a {answer.status} answer")
            assert result.remote_id, (
                f"{where}: record {record.local_id} reported ok with no remote id")
            assert isinstance(result.remote_id, str), (
                f"{where}: record {record.local_id} has a remote id that is not a string")
        else:
            assert result.error_kind in (ErrorKind.RETRYABLE, ErrorKind.PERMANENT), (
                f"{where}: record {record.local_id} failed as {result.error_kind}; garbage is "
                "retryable or permanent")


# --- webhooks ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookShape:
    """Which header carries the signature and whether it is timestamped."""

    header: str
    timestamped: bool


def signature_header(headers: dict[str, str], name: str | None = None) -> str:
    """The signature header of a delivery: ``name`` or the one header named ``*signature*``."""
    if name is not None:
        found = [h for h in headers if h.lower() == name.lower()]
        assert found, f"the delivery has no {name} header: {sorted(headers)}"
        return found[0]
    found = [h for h in headers if "signature" in h.lower()]
    assert len(found) == 1, (
        f"cannot tell the signature header among {sorted(headers)}; set signature_header")
    return found[0]


def _flip(text: str, start: int = 0) -> str:
    """``text`` with one letter or digit changed (not in trailing base64 padding)."""
    end = len(text.rstrip("="))
    for i in range(end - 1, start - 1, -1):
        c = text[i]
        if c.isalnum() and c.isascii():
            repl = "1" if c == "0" else ("0" if c.isdigit() else ("b" if c == "a" else "a"))
            if c.isupper():
                repl = "B" if c == "A" else "A"
            return text[:i] + repl + text[i + 1:]
    return text + "0"


async def _delivery(session: KitSession, entity: Entity,
                    timestamp: int | None = None) -> tuple[WebhookRequest, str]:
    """Push one record and get a signed delivery for it; returns (delivery, record id)."""
    provider = session.provider
    records = outbound_records(provider, entity, 1, run="hook")
    client = await session.client()
    outcome = await push_until_done(client, entity, records, _batch(provider, entity),
                                    attempts=5, clock=session.clock)
    [remote_id] = _assert_all_pushed(outcome, records)
    stored = (await session.store()).get(entity.value, [])
    ids = {str(r.get("id")) for r in stored}
    record_id = remote_id if remote_id in ids or len(stored) != 1 else str(stored[0].get("id"))
    url = WEBHOOK_URL.format(provider=provider.name)
    delivery = await session.webhook(entity.value, record_id, "updated", timestamp=timestamp,
                                     url=url)
    return delivery, record_id


def _with(request: WebhookRequest, *, headers: dict[str, str] | None = None,
          body: bytes | None = None) -> WebhookRequest:
    return WebhookRequest(headers=headers if headers is not None else dict(request.headers),
                          body=body if body is not None else request.body,
                          url=request.url, received_at=request.received_at)


async def check_webhook_verifies(session: KitSession, entity: Entity) -> WebhookRequest:
    """A delivery signed by the emulator verifies with the webhook secret."""
    delivery, _ = await _delivery(session, entity)
    verdict = session.provider.verify_webhook(delivery, session.settings.webhook_secret)
    assert verdict.ok, f"a genuine delivery was refused: {verdict.reason}"
    return delivery


async def check_webhook_refusals(session: KitSession, entity: Entity, *,
                                 header: str | None = None,
                                 timestamped: bool | None = None) -> WebhookShape:
    """Tampered body, wrong secret, tampered signature and (if timestamped) stale
    deliveries are refused."""
    provider = session.provider
    secret = session.settings.webhook_secret
    delivery, record_id = await _delivery(session, entity)
    name = signature_header(dict(delivery.headers), header)
    value = delivery.headers[name]
    if timestamped is None:
        timestamped = re.search(r"(^|,)\s*t=\d+", value) is not None
    cases: dict[str, WebhookRequest] = {
        "tampered body": _with(delivery, body=_flip(delivery.body.decode("utf-8"),
                                                    len(delivery.body) // 3).encode("utf-8")),
        "extra byte in body": _with(delivery, body=delivery.body + b" "),
        "tampered signature": _with(delivery, headers={**delivery.headers, name: _flip(value)}),
        "missing signature": _with(delivery, headers={
            k: v for k, v in delivery.headers.items() if k != name}),
    }
    for what, forged in cases.items():
        verdict = provider.verify_webhook(forged, secret)
        assert not verdict.ok, f"a delivery with a {what} was accepted"
    verdict = provider.verify_webhook(delivery, secret + "-wrong")
    assert not verdict.ok, "a delivery was accepted with the wrong secret"
    if timestamped:
        old = int(time.time()) - 3600
        stale = await session.webhook(entity.value, record_id, "updated", timestamp=old,
                                      url=delivery.url)
        verdict = provider.verify_webhook(stale, secret)
        assert not verdict.ok, "a delivery signed an hour ago was accepted"
    return WebhookShape(name, timestamped)


_GARBAGE_HEADERS: tuple[dict[str, str], ...] = (
    {},
    {"content-type": "application/json"},
    {"Stripe-Signature": "garbage", "X-Square-HmacSha256-Signature": "%%%",
     "X-Mailchimp-Signature": "t=,v1=", "intuit-signature": "!!!"},
    {"Stripe-Signature": "t=abc,v1=zz,v0=", "X-Mailchimp-Signature": "v1=00,t=99999999999999"},
    {"X-Square-HmacSha256-Signature": "", "intuit-signature": "=" * 3},
    {"Stripe-Signature": "t=1,v1=" + "a" * 10_000, "intuit-signature": "é"},
)
_GARBAGE_BODIES: tuple[bytes, ...] = (b"", b"{", b"\xff\xfe\x00", b"null", b'{"type": 1}',
                                      b"[]", b"data[id]=1&type=subscribe")


def check_webhook_garbage(provider: Provider, signature: str | None = None) -> None:
    """``verify_webhook`` and ``parse_webhook`` never raise on garbage."""
    now = datetime.now(UTC)
    headers = list(_GARBAGE_HEADERS)
    if signature is not None:
        headers += [{signature: v} for v in ("", "x", "t=1", "v1=", "t=1,v1=00", "\x00")]
    for h in headers:
        for body in _GARBAGE_BODIES:
            for url in ("", "https://syncd.example.com/webhooks/x"):
                request = WebhookRequest(headers=h, body=body, url=url, received_at=now)
                try:
                    verdict = provider.verify_webhook(request, "secret")
                except Exception as exc:
                    raise AssertionError(
                        f"verify_webhook raised {type(exc).__name__} on headers {h!r} "
                        f"body {body!r}") from exc
                assert not verdict.ok, f"garbage was accepted: headers {h!r} body {body!r}"
                try:
                    changes = provider.parse_webhook(request)
                except Exception as exc:
                    raise AssertionError(
                        f"parse_webhook raised {type(exc).__name__} on body {body!r}") from exc
                assert isinstance(changes, list)


#: Nesting depths tried: just past the bound bundled parsers keep, past the interpreter's
#: recursion limit, and far past it.
DEEP_NESTING = (MAX_DEPTH + 1, 5_000, 100_000)
#: The depth of the value put in place of each part of a genuine delivery.
_EMBEDDED_DEPTH = 5_000


def _deep_bodies() -> Iterator[tuple[str, bytes]]:
    for depth in DEEP_NESTING:
        yield f"{depth} nested JSON arrays", b"[" * depth + b"]" * depth
        yield f"{depth} nested JSON objects", b'{"a":' * depth + b"1" + b"}" * depth
        yield f"{depth} unclosed JSON arrays", b"[" * depth
        yield f"a form field nested {depth} levels", b"data" + b"[a]" * depth + b"=1"


def _json_paths(value: object, path: tuple[str | int, ...] = (),
                levels: int = 4) -> Iterator[tuple[str | int, ...]]:
    """Paths to the values of a decoded delivery, ``levels`` deep at most."""
    if levels == 0:
        return
    items: list[tuple[str | int, object]] = (
        list(value.items()) if isinstance(value, dict)
        else list(enumerate(value)) if isinstance(value, list) else [])
    for key, child in items:
        yield (*path, key)
        yield from _json_paths(child, (*path, key), levels - 1)


def _replaced(value: object, path: tuple[str | int, ...], new: object) -> object:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {k: _replaced(v, rest, new) if k == head else v for k, v in value.items()}
    assert isinstance(value, list)
    return [_replaced(v, rest, new) if i == head else v for i, v in enumerate(value)]


def _embedded_bodies(body: bytes) -> Iterator[tuple[str, bytes]]:
    """A genuine delivery with one part at a time replaced by a deeply nested value, so
    that a parser which checks the envelope first still meets the nesting."""
    deep = "[" * _EMBEDDED_DEPTH + "]" * _EMBEDDED_DEPTH
    marker = "kit-deep-value-marker"
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if isinstance(doc, dict | list):
        for path in _json_paths(doc):
            text = json.dumps(_replaced(doc, path, marker))
            yield (f"the delivery with {'/'.join(map(str, path))} nested "
                   f"{_EMBEDDED_DEPTH} levels", text.replace(f'"{marker}"', deep).encode())
        return
    pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    for i, (key, _) in enumerate(pairs):
        nested = [*pairs[:i], (key + "[a]" * _EMBEDDED_DEPTH, "1"), *pairs[i + 1:]]
        yield (f"the delivery with form field {key} nested {_EMBEDDED_DEPTH} levels",
               urlencode(nested).encode())


def _parse_safely(provider: Provider, request: WebhookRequest, secret: str, what: str) -> None:
    try:
        provider.verify_webhook(request, secret)
    except Exception as exc:
        raise AssertionError(f"verify_webhook raised {type(exc).__name__} on {what}") from exc
    try:
        changes = provider.parse_webhook(request)
    except Exception as exc:
        raise AssertionError(f"parse_webhook raised {type(exc).__name__} on {what}") from exc
    assert isinstance(changes, list), f"parse_webhook returned {type(changes).__name__}"
    for change in changes:
        try:
            json.dumps(dict(change.payload), default=str)
        except Exception as exc:
            raise AssertionError(
                f"parse_webhook returned a payload that cannot be stored "
                f"({type(exc).__name__}) for {what}") from exc


async def check_webhook_deep_bodies(session: KitSession, entity: Entity) -> None:
    """Deeply nested bodies (alone, and in place of each part of a genuine delivery) make
    neither ``verify_webhook`` nor ``parse_webhook`` raise, and whatever ``parse_webhook``
    returns can be stored. ``parse_webhook`` does not check signatures (the receiver
    verifies first), so these bodies stand for deliveries that verified."""
    provider = session.provider
    secret = session.settings.webhook_secret
    delivery, _ = await _delivery(session, entity)
    for what, body in [*_deep_bodies(), *_embedded_bodies(delivery.body)]:
        _parse_safely(provider, _with(delivery, body=body), secret, what)


async def check_webhook_parse(session: KitSession, entity: Entity) -> None:
    """A verified delivery parses into an inbound change for that record."""
    provider = session.provider
    delivery, record_id = await _delivery(session, entity)
    verdict = provider.verify_webhook(delivery, session.settings.webhook_secret)
    assert verdict.ok, f"a genuine delivery was refused: {verdict.reason}"
    changes = provider.parse_webhook(delivery)
    assert changes, f"parse_webhook found no change in {delivery.body[:200]!r}"
    matching = [c for c in changes if c.remote_id == record_id]
    assert matching, (f"no change for record {record_id!r}; got remote ids "
                      f"{[c.remote_id for c in changes]}")
    for change in matching:
        assert change.provider == provider.name, f"change.provider is {change.provider!r}"
        assert change.entity in (None, entity), (
            f"the change is for {change.entity}, expected {entity.value}")
        assert change.dedupe_key, "the change has no dedupe_key"
