"""The kit against the scaffold's reference plugin: it passes, and each check fails when
the plugin breaks the contract the check is about."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import sys
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any

import pytest

from daemon.provider import (
    ClientContext,
    EntitySupport,
    ErrorKind,
    OutboundRecord,
    ProviderClient,
    ProviderError,
    RecordResult,
    TemplateSpec,
    WebhookRequest,
    WebhookVerdict,
)
from daemon.provider import Entity as E
from daemon.scaffold import plugin_names, render
from daemon.testing import kit
from daemon.testing.kit import KitSession


@pytest.fixture(scope="module")
def ref(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ModuleType]]:
    """The scaffold rendered as ``syncd_kitref`` and imported."""
    root = tmp_path_factory.mktemp("kitref")
    render(plugin_names("kitref"), root / "dist")
    sys.path.insert(0, str(root / "dist"))
    try:
        yield {m: importlib.import_module(f"syncd_kitref.{m}")
               for m in ("provider", "client", "emulator")}
    finally:
        sys.path.remove(str(root / "dist"))
        for name in [n for n in sys.modules if n.startswith("syncd_kitref")]:
            del sys.modules[name]


def _provider(ref: dict[str, ModuleType], client: type | None = None, **methods: Any) -> Any:
    """The reference provider, with another client class or methods replaced."""
    base = ref["provider"].KitrefProvider
    attrs: dict[str, Any] = dict(methods)
    if client is not None:
        caps_holder = base

        def make_client(self: Any, ctx: ClientContext) -> ProviderClient:
            return client(ctx, caps_holder.capabilities)  # type: ignore[no-any-return]

        attrs["client"] = make_client
    return type("Variant", (base,), attrs)()


async def test_reference_plugin_passes_every_check(ref: dict[str, ModuleType]) -> None:
    provider = ref["provider"].KitrefProvider()
    kit.check_capabilities(provider)
    kit.check_default_templates(provider)
    kit.check_webhook_garbage(provider)
    for entity in kit.pushable_entities(provider):
        for check in (kit.check_batching, kit.check_idempotent_retry, kit.check_crash_recovery,
                      kit.check_rate_limit_429, kit.check_auth_failure):
            async with KitSession(provider) as session:
                await check(session, entity)
    for entity in kit.pushable_entities(provider):
        for answer in kit.GARBAGE_ANSWERS:
            async with KitSession(provider) as session:
                await kit.check_malformed_answers(session, entity, answer)
    async with KitSession(provider) as session:
        await kit.check_webhook_verifies(session, E.CUSTOMER)
    async with KitSession(provider) as session:
        shape = await kit.check_webhook_refusals(session, E.CUSTOMER)
    assert shape == kit.WebhookShape("Kitref-Signature", timestamped=True)
    async with KitSession(provider) as session:
        await kit.check_webhook_parse(session, E.CUSTOMER)
    async with KitSession(provider) as session:
        await kit.check_webhook_deep_bodies(session, E.CUSTOMER)


async def test_batching_fails_when_batches_are_split(ref: dict[str, ModuleType]) -> None:
    class OneByOne(ref["client"].KitrefClient):  # type: ignore[misc, name-defined]
        async def push(self, entity: E, records: Sequence[OutboundRecord]) -> list[RecordResult]:
            out: list[RecordResult] = []
            for record in records:
                out += await super().push(entity, [record])
            return out

    async with KitSession(_provider(ref, OneByOne)) as session:
        with pytest.raises(AssertionError, match="at least 2 full batch writes"):
            await kit.check_batching(session, E.CUSTOMER)


async def test_batching_fails_when_a_batch_is_too_big(ref: dict[str, ModuleType]) -> None:
    base = ref["provider"].KitrefProvider.capabilities
    bigger = dataclasses.replace(base.entities[E.CUSTOMER], batch_size=30)
    caps = dataclasses.replace(base, entities={**base.entities, E.CUSTOMER: bigger})
    provider = _provider(ref, capabilities=caps)
    async with KitSession(provider) as session:
        with pytest.raises(AssertionError,
                           match=r"push of 30 customer records failed \(permanent\)"):
            await kit.check_batching(session, E.CUSTOMER)


class _NoKeys:
    """Mixin: sends every record without its idempotency key."""

    async def push(self, entity: E, records: Sequence[OutboundRecord]) -> list[RecordResult]:
        keyless = [dataclasses.replace(r, idempotency_key="") for r in records]
        return await super().push(entity, keyless)  # type: ignore[misc, no-any-return]


async def test_retry_without_idempotency_duplicates(ref: dict[str, ModuleType]) -> None:
    client = type("NoKeys", (_NoKeys, ref["client"].KitrefClient), {})
    async with KitSession(_provider(ref, client)) as session:
        with pytest.raises(AssertionError, match="pushing the same records twice left"):
            await kit.check_idempotent_retry(session, E.PRODUCT)


async def test_crash_without_idempotency_duplicates(ref: dict[str, ModuleType]) -> None:
    client = type("NoKeys", (_NoKeys, ref["client"].KitrefClient), {})
    async with KitSession(_provider(ref, client)) as session:
        with pytest.raises(AssertionError, match="after a crash and retry the emulator holds"):
            await kit.check_crash_recovery(session, E.PRODUCT)


async def test_rate_limit_check_catches_lost_records(ref: dict[str, ModuleType]) -> None:
    class Pretends(ref["client"].KitrefClient):  # type: ignore[misc, name-defined]
        """Makes one attempt per call and reports a 429 as success."""

        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            self.http.max_attempts = 1

        async def push(self, entity: E, records: Sequence[OutboundRecord]) -> list[RecordResult]:
            try:
                return await super().push(entity, records)  # type: ignore[no-any-return]
            except ProviderError:
                return [RecordResult(r.local_id, True, remote_id=f"lost-{r.local_id}")
                        for r in records]

    async with KitSession(_provider(ref, Pretends)) as session:
        with pytest.raises(AssertionError, match="after the 429 storm"):
            await kit.check_rate_limit_429(session, E.CUSTOMER)


async def test_auth_check_catches_misclassification(ref: dict[str, ModuleType]) -> None:
    class Retryable(ref["client"].KitrefClient):  # type: ignore[misc, name-defined]
        async def push(self, entity: E, records: Sequence[OutboundRecord]) -> list[RecordResult]:
            try:
                return await super().push(entity, records)  # type: ignore[no-any-return]
            except ProviderError as exc:
                raise ProviderError(str(exc), ErrorKind.RETRYABLE) from None

    async with KitSession(_provider(ref, Retryable)) as session:
        with pytest.raises(AssertionError, match="classified as retryable"):
            await kit.check_auth_failure(session, E.CUSTOMER)


async def test_accepting_forgeries_is_caught(ref: dict[str, ModuleType]) -> None:
    def trusting(self: Any, request: WebhookRequest, secret: str) -> WebhookVerdict:
        return WebhookVerdict(bool(request.headers))

    async with KitSession(_provider(ref, verify_webhook=trusting)) as session:
        with pytest.raises(AssertionError, match="tampered body was accepted"):
            await kit.check_webhook_refusals(session, E.CUSTOMER)


async def test_accepting_stale_deliveries_is_caught(ref: dict[str, ModuleType]) -> None:
    module = ref["provider"]
    original = module.KitrefProvider.verify_webhook

    def no_tolerance(self: Any, request: WebhookRequest, secret: str) -> WebhookVerdict:
        header = request.headers.get(module.SIGNATURE_HEADER, "")
        stamp = header.partition("t=")[2].partition(",")[0]
        if stamp.isdigit():
            request = dataclasses.replace(request, received_at=request.received_at.fromtimestamp(
                int(stamp), request.received_at.tzinfo))
        return original(self, request, secret)  # type: ignore[no-any-return]

    async with KitSession(_provider(ref, verify_webhook=no_tolerance)) as session:
        with pytest.raises(AssertionError, match="signed an hour ago was accepted"):
            await kit.check_webhook_refusals(session, E.CUSTOMER)


def _write_once(ref: dict[str, ModuleType]) -> Any:
    """The reference capabilities with products declared write-once."""
    base = ref["provider"].KitrefProvider.capabilities
    once = dataclasses.replace(base.entities[E.PRODUCT], write_once=True)
    return dataclasses.replace(base, entities={**base.entities, E.PRODUCT: once})


class _RefusesUpdates:
    """Mixin: refuses every update of a linked record, as a write-once client does."""

    refusal = ErrorKind.PERMANENT

    async def push(self, entity: E, records: Sequence[OutboundRecord]) -> list[RecordResult]:
        if any(r.remote_id for r in records):
            return [RecordResult.failure(r, "cannot be changed once created", self.refusal)
                    for r in records]
        return await super().push(entity, records)  # type: ignore[misc, no-any-return]


async def test_write_once_check_passes_a_client_that_refuses_updates(
        ref: dict[str, ModuleType]) -> None:
    client = type("Refuses", (_RefusesUpdates, ref["client"].KitrefClient), {})
    provider = _provider(ref, client, capabilities=_write_once(ref))
    assert kit.write_once_entities(provider) == [E.PRODUCT]
    async with KitSession(provider) as session:
        await kit.check_write_once(session, E.PRODUCT)


async def test_updating_a_write_once_record_is_caught(ref: dict[str, ModuleType]) -> None:
    async with KitSession(_provider(ref, capabilities=_write_once(ref))) as session:
        with pytest.raises(AssertionError, match="update of a write-once product was accepted"):
            await kit.check_write_once(session, E.PRODUCT)


async def test_a_retryable_write_once_refusal_is_caught(ref: dict[str, ModuleType]) -> None:
    client = type("Retries", (_RefusesUpdates, ref["client"].KitrefClient),
                  {"refusal": ErrorKind.RETRYABLE})
    async with KitSession(_provider(ref, client, capabilities=_write_once(ref))) as session:
        with pytest.raises(AssertionError, match="expected permanent"):
            await kit.check_write_once(session, E.PRODUCT)


def _garbage(name: str) -> kit.Garbage:
    (answer,) = [g for g in kit.GARBAGE_ANSWERS if g.name == name]
    return answer


async def _malformed_check_fails(ref: dict[str, ModuleType], client: type, entity: E,
                                 garbage: str, match: str) -> None:
    """The malformed-answers check, run on the reference plugin with ``client``, fails with
    a message matching ``match``."""
    async with KitSession(_provider(ref, client)) as session:
        with pytest.raises(AssertionError, match=match):
            await kit.check_malformed_answers(session, entity, _garbage(garbage))


@pytest.mark.parametrize(("name", "raised"), [
    ("html", "JSONDecodeError"), ("list", "TypeError"), ("object", "KeyError"),
    ("empty", "JSONDecodeError"), ("wrong-types", "TypeError"),
])
async def test_crashing_on_a_malformed_answer_is_caught(
        ref: dict[str, ModuleType], name: str, raised: str) -> None:
    class Fragile(ref["client"].KitrefClient):  # type: ignore[misc, name-defined]
        """Trusts the batch answer's shape."""

        async def _push_customers(self, records: Sequence[OutboundRecord]
                                  ) -> list[RecordResult]:
            response = await self.http.request("POST", "/v1/customers/batch", json_body={
                "customers": [dict(r.payload) for r in records]})
            answers = response.json()["results"]
            return [RecordResult(r.local_id, True, remote_id=str(a["id"]))
                    for r, a in zip(records, answers, strict=True)]

    async with KitSession(_provider(ref, Fragile)) as session:
        await kit.check_batching(session, E.CUSTOMER)  # it works against the real thing
    await _malformed_check_fails(ref, Fragile, E.CUSTOMER, name,
                                 f"answered {name}: the push raised {raised}")


async def test_a_success_without_a_remote_id_is_caught(ref: dict[str, ModuleType]) -> None:
    class Optimist(ref["client"].KitrefClient):  # type: ignore[misc, name-defined]
        """Takes any answer to a product write as success."""

        async def _push_product(self, record: OutboundRecord) -> RecordResult:
            data = await self.http.json("POST", "/v1/products", json_body=dict(record.payload))
            rid = data.get("id") if isinstance(data, dict) else None
            return RecordResult(record.local_id, True, remote_id=rid, action="created")

    await _malformed_check_fails(ref, Optimist, E.PRODUCT, "list", "reported ok with no remote id")


async def test_a_success_on_an_error_status_is_caught(ref: dict[str, ModuleType]) -> None:
    class Swallows(ref["client"].KitrefClient):  # type: ignore[misc, name-defined]
        async def push(self, entity: E, records: Sequence[OutboundRecord]) -> list[RecordResult]:
            try:
                return await super().push(entity, records)  # type: ignore[no-any-return]
            except ProviderError:
                return [RecordResult(r.local_id, True, remote_id=r.local_id) for r in records]

    await _malformed_check_fails(ref, Swallows, E.CUSTOMER, "error-html",
                                 "reported ok on a 400 answer")


async def test_garbage_taken_for_an_auth_failure_is_caught(ref: dict[str, ModuleType]) -> None:
    class Blames(ref["client"].KitrefClient):  # type: ignore[misc, name-defined]
        async def push(self, entity: E, records: Sequence[OutboundRecord]) -> list[RecordResult]:
            try:
                return await super().push(entity, records)  # type: ignore[no-any-return]
            except ProviderError as exc:
                raise ProviderError(str(exc), ErrorKind.AUTH) from None

    await _malformed_check_fails(ref, Blames, E.CUSTOMER, "object", "failed as auth")


async def test_lost_or_reordered_results_are_caught(ref: dict[str, ModuleType]) -> None:
    class Shuffles(ref["client"].KitrefClient):  # type: ignore[misc, name-defined]
        async def push(self, entity: E, records: Sequence[OutboundRecord]) -> list[RecordResult]:
            try:
                got: list[RecordResult] = await super().push(entity, records)
            except ProviderError as exc:
                got = [RecordResult.failure(r, str(exc), exc.kind) for r in records]
            return got[::-1] if self.reverse else got[1:]

    lossy = type("Lossy", (Shuffles,), {"reverse": False})
    await _malformed_check_fails(ref, lossy, E.CUSTOMER, "html", "returned 1 results for 2 records")
    reversing = type("Reversing", (Shuffles,), {"reverse": True})
    await _malformed_check_fails(ref, reversing, E.CUSTOMER, "html", "results out of order")


async def test_a_client_that_never_calls_proves_nothing(ref: dict[str, ModuleType]) -> None:
    class Idle(ref["client"].KitrefClient):  # type: ignore[misc, name-defined]
        async def push(self, entity: E, records: Sequence[OutboundRecord]) -> list[RecordResult]:
            return [RecordResult.failure(r, "not today", ErrorKind.RETRYABLE) for r in records]

    await _malformed_check_fails(ref, Idle, E.CUSTOMER, "list", "never called the server")


async def test_a_push_that_hangs_on_garbage_is_cut_short(ref: dict[str, ModuleType]) -> None:
    class Waits(ref["client"].KitrefClient):  # type: ignore[misc, name-defined]
        """Polls forever for an answer it can read."""

        async def push(self, entity: E, records: Sequence[OutboundRecord]) -> list[RecordResult]:
            while True:
                try:
                    return await super().push(entity, records)  # type: ignore[no-any-return]
                except ProviderError:
                    await asyncio.sleep(0.05)

    async with KitSession(_provider(ref, Waits)) as session:
        with pytest.raises(AssertionError, match=r"did not finish within 0\.5s"):
            await kit.check_malformed_answers(session, E.CUSTOMER, _garbage("empty"),
                                              timeout=0.5)


def test_raising_on_garbage_is_caught(ref: dict[str, ModuleType]) -> None:
    def fragile(self: Any, request: WebhookRequest, secret: str) -> WebhookVerdict:
        return WebhookVerdict(False, request.headers["Kitref-Signature"])

    with pytest.raises(AssertionError, match="verify_webhook raised KeyError"):
        kit.check_webhook_garbage(_provider(ref, verify_webhook=fragile))


async def test_raising_on_a_deeply_nested_body_is_caught(ref: dict[str, ModuleType]) -> None:
    import json

    original = ref["provider"].KitrefProvider.parse_webhook

    def unbounded(self: Any, request: WebhookRequest) -> list[Any]:
        try:
            json.loads(request.body)  # recurses once per level: RecursionError when deep
        except ValueError:
            return []
        return original(self, request)  # type: ignore[no-any-return]

    async with KitSession(_provider(ref, parse_webhook=unbounded)) as session:
        with pytest.raises(AssertionError, match="parse_webhook raised RecursionError on "
                                                 "5000 nested JSON arrays"):
            await kit.check_webhook_deep_bodies(session, E.CUSTOMER)


async def test_an_unstorable_deep_payload_is_caught(ref: dict[str, ModuleType]) -> None:
    from daemon.provider import InboundChange

    def hoarding(self: Any, request: WebhookRequest) -> list[Any]:
        deep: list[Any] = []  # what a parser that does not bound nesting hands on
        for _ in range(100_000):
            deep = [deep]
        return [InboundChange(provider="kitref", entity=E.CUSTOMER, remote_id="c1",
                              change="updated", dedupe_key="k1", payload={"deep": deep})]

    async with KitSession(_provider(ref, parse_webhook=hoarding)) as session:
        with pytest.raises(AssertionError, match="a payload that cannot be stored"):
            await kit.check_webhook_deep_bodies(session, E.CUSTOMER)


async def test_parse_for_the_wrong_record_is_caught(ref: dict[str, ModuleType]) -> None:
    original = ref["provider"].KitrefProvider.parse_webhook

    def confused(self: Any, request: WebhookRequest) -> list[Any]:
        return [dataclasses.replace(c, remote_id="someone-else")
                for c in original(self, request)]

    async with KitSession(_provider(ref, parse_webhook=confused)) as session:
        with pytest.raises(AssertionError, match="no change for record"):
            await kit.check_webhook_parse(session, E.CUSTOMER)


def test_capability_and_template_mistakes_are_caught(ref: dict[str, ModuleType]) -> None:
    base = ref["provider"].KitrefProvider.capabilities
    empty = dataclasses.replace(base.entities[E.PRODUCT], batch_size=0)
    broken = dataclasses.replace(base, entities={**base.entities, E.PRODUCT: empty})
    with pytest.raises(AssertionError, match="batch_size must be > 0"):
        kit.check_capabilities(_provider(ref, capabilities=broken))

    unnamed: EntitySupport = dataclasses.replace(base.entities[E.PRODUCT], fields=())
    broken = dataclasses.replace(base, entities={**base.entities, E.PRODUCT: unnamed})
    with pytest.raises(AssertionError, match="field catalogue is empty"):
        kit.check_capabilities(_provider(ref, capabilities=broken))

    def templates(self: Any) -> list[TemplateSpec]:
        return [TemplateSpec("bad", "kitref", {"customer": {"emial": "customer.email"}},
                             is_default=True)]

    with pytest.raises(AssertionError, match="unknown customer field 'emial'"):
        kit.check_default_templates(_provider(ref, default_templates=templates))


def test_reference_verify_never_raises_and_never_accepts_forgeries(
        ref: dict[str, ModuleType]) -> None:
    from datetime import UTC, datetime

    from hypothesis import given, settings
    from hypothesis import strategies as st

    provider = ref["provider"].KitrefProvider()
    now = datetime.now(UTC)
    header = st.one_of(
        st.text(max_size=80),
        st.builds(lambda t, v: f"t={t},v1={v}", st.integers(-10**12, 10**12),
                  st.text(alphabet="0123456789abcdef", max_size=64)),
    )

    @settings(max_examples=200, deadline=None)
    @given(header, st.binary(max_size=200))
    def check(value: str, body: bytes) -> None:
        request = WebhookRequest({"Kitref-Signature": value}, body, "https://x", now)
        assert not provider.verify_webhook(request, "secret").ok
        assert isinstance(provider.parse_webhook(request), list)

    check()
