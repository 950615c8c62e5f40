"""Pure rules of the sync engine: what to send, keys, pacing, healing, health thresholds."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.mapping import parse_entity_mapping
from daemon.provider import Direction, Entity, EntitySupport, FieldSpec, RateLimit
from daemon.sync.engine import _Link, decide, delete_policy
from daemon.sync.healing import find_alternative, heal_mapping
from daemon.sync.health import classify
from daemon.sync.keys import KEY_LENGTH, create_key, idempotency_key, update_key
from daemon.sync.mappings import detect_venue_type
from daemon.sync.pacing import Pacer, push_concurrency, push_rate

SUPPORT = EntitySupport(
    Entity.CUSTOMER, frozenset({Direction.PUSH}), "customer", 100,
    (FieldSpec("email_address", "email", required=True), FieldSpec("given_name"),
     FieldSpec("family_name")),
    delete_policies=frozenset({"archive", "leave"}))


def test_unchanged_synced_record_is_skipped() -> None:
    link = _Link("r1", "h1", None, "synced")
    assert decide(link, "h1", False, "leave") == "skip"
    assert decide(link, "h2", False, "leave") == "upsert"
    assert decide(None, "h1", False, "leave") == "upsert"


def test_failed_record_is_sent_again_even_with_the_same_hash() -> None:
    assert decide(_Link(None, "h1", None, "failed"), "h1", False, "leave") == "upsert"


def test_changed_write_once_record_is_frozen_not_sent() -> None:
    link = _Link("r1", "h1", None, "synced")
    assert decide(link, "h2", False, "leave", write_once=True) == "frozen"
    assert decide(link, "h1", False, "leave", write_once=True) == "skip"
    # Never created (or its create failed): created as usual.
    assert decide(None, "h1", False, "leave", write_once=True) == "upsert"
    assert decide(_Link(None, "h1", None, "failed"), "h2", False, "leave",
                  write_once=True) == "upsert"


def test_write_once_link_left_failed_or_pending_is_settled_not_sent_again() -> None:
    for state in ("failed", "pending"):
        for digest in ("h1", "h2"):
            link = _Link("r1", "h1", None, state)
            assert decide(link, digest, False, "leave", write_once=True) == "frozen"


def test_write_once_record_removed_remotely_is_created_again() -> None:
    for state in ("deleted", "archived"):
        link = _Link("r1", "h1", None, state)
        assert decide(link, "h2", False, "leave", write_once=True) == "upsert"


def test_deleting_a_write_once_record_follows_the_policy() -> None:
    link = _Link("r1", "h1", None, "synced")
    assert decide(link, "", True, "leave", write_once=True) == "skip"
    assert decide(link, "", True, "delete", write_once=True) == "delete"


def test_deleted_record_follows_the_policy() -> None:
    link = _Link("r1", "h1", None, "synced")
    assert decide(link, "", True, "leave") == "skip"
    assert decide(link, "", True, "archive") == "archive"
    assert decide(link, "", True, "delete") == "delete"
    # Never pushed, or already removed: nothing to do.
    assert decide(None, "", True, "delete") == "skip"
    assert decide(_Link("r1", "h1", None, "deleted"), "", True, "delete") == "skip"


@pytest.mark.parametrize("policy", ["archive", "delete"])
@pytest.mark.parametrize("write_once", [False, True])
def test_removal_of_an_already_archived_record_is_not_sent_again(policy: str,
                                                                  write_once: bool) -> None:
    link = _Link("r1", "h1", None, "archived")
    assert decide(link, "", True, policy, write_once=write_once) == "skip"  # type: ignore[arg-type]
    # The same link still synced: the removal is sent.
    synced = _Link("r1", "h1", None, "synced")
    assert decide(synced, "", True, policy, write_once=write_once) == policy  # type: ignore[arg-type]


def test_delete_policy_falls_back_to_what_the_provider_can_do() -> None:
    integ = {"schedules": {"customer": {"on_delete": "delete"}}, "options": {}}
    assert delete_policy(integ, Entity.CUSTOMER, SUPPORT) == "archive"
    integ = {"schedules": {}, "options": {"delete_policy": {"customer": "archive"}}}
    assert delete_policy(integ, Entity.CUSTOMER, SUPPORT) == "archive"
    assert delete_policy({"schedules": {}, "options": {}}, Entity.CUSTOMER, SUPPORT) == "leave"
    integ = {"schedules": {"customer": {"on_delete": "explode"}}, "options": {}}
    assert delete_policy(integ, Entity.CUSTOMER, SUPPORT) == "leave"


@given(st.text(min_size=1), st.text(min_size=1))
def test_keys_are_deterministic_and_operation_specific(local_id: str, digest: str) -> None:
    key = idempotency_key("v", "square", "customer", local_id, digest, operation="update")
    assert key == idempotency_key("v", "square", "customer", local_id, digest,
                                  operation="update")
    assert len(key) == KEY_LENGTH
    assert key != idempotency_key("v", "square", "customer", local_id, digest + "x",
                                  operation="update")
    assert key != idempotency_key("v", "square", "customer", local_id, digest,
                                  operation="delete")


@given(st.text(min_size=1), st.text(min_size=1), st.text(min_size=1))
def test_a_create_key_follows_identity_not_content(local_id: str, a: str, b: str) -> None:
    # A retry of a create after a lost answer must replay even if the record changed since.
    key = create_key("v", "stripe", "transaction", local_id)
    assert key == create_key("v", "stripe", "transaction", local_id)
    assert len(key) == KEY_LENGTH
    assert key != create_key("v", "stripe", "transaction", local_id + "x")
    assert key != create_key("v", "stripe", "customer", local_id)
    assert key != create_key("w", "stripe", "transaction", local_id)
    # A second life after the remote record was deleted is a new create.
    assert key != create_key("v", "stripe", "transaction", local_id, replaces=a)
    # After a recorded refusal the earlier attempt left nothing: a new request.
    refused = datetime(2026, 1, 1, tzinfo=UTC)
    assert key != create_key("v", "stripe", "transaction", local_id, refused_at=refused)


@given(st.text(min_size=1), st.text(min_size=1), st.text(min_size=1))
def test_an_update_key_follows_the_state_it_starts_from(local_id: str, a: str, b: str) -> None:
    def key(base: str, content: str, version: str | None = None, at: int = 0) -> str:
        return update_key("v", "stripe", "customer", local_id, remote_id="cus_1",
                          remote_version=version, base_hash=base, content_hash=content,
                          synced_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=at))

    assert key(a, b) == key(a, b)  # the same change retried replays
    if a != b:
        # A -> B, then B -> A: the second A starts from B, so it is not A's first answer.
        assert key(b, a) != key(a, b)
    assert key(a, b, "v1") != key(a, b, "v2")
    # X -> A, A -> X, X -> A again: equal states, stored at different times.
    assert key(a, b, at=1) != key(a, b, at=2)


def test_push_rate_takes_the_narrowest_limit() -> None:
    qbo = RateLimit(requests_per_second=10, extra={"batch_per_minute": 40.0,
                                                   "requests_per_minute": 500.0})
    assert push_rate(qbo, 30) == pytest.approx(40 / 60)
    # Batch limits do not apply to single-record calls.
    assert push_rate(qbo, 1) == pytest.approx(500 / 60)
    assert push_rate(RateLimit(requests_per_second=25), 1) == 25


async def test_pacer_spaces_calls_and_honours_pauses() -> None:
    pacer = Pacer(rate=200.0, burst=1)
    start = time.monotonic()
    await asyncio.gather(*(pacer.acquire() for _ in range(5)))
    assert time.monotonic() - start >= 4 / 200 - 1e-3
    pacer.pause(0.05)
    start = time.monotonic()
    await pacer.acquire()
    assert time.monotonic() - start >= 0.04


def test_healing_retargets_renamed_fields_and_removes_unknown_ones() -> None:
    mapping = parse_entity_mapping({"Email_Address": "customer.email",
                                    "customer.given_name": "customer.first_name",
                                    "shoe_size": "customer.first_name",
                                    "family_name": "customer.surname"})
    healed, changes = heal_mapping(Entity.CUSTOMER, mapping, SUPPORT)
    assert set(healed) == {"email_address", "given_name"}
    described = {c.describe() for c in changes}
    assert "customer: target 'Email_Address' -> 'email_address'" in described
    assert any(c.action == "remove" and c.target == "shoe_size" for c in changes)
    # customer.surname is not a source field and has no near neighbour: removed, reported.
    assert any(c.action == "remove" and c.old == "customer.surname" for c in changes)


def test_find_alternative_refuses_ambiguous_matches() -> None:
    assert find_alternative("Item.Name", ["name", "description"]) == "name"
    assert find_alternative("x.name", ["a.name", "b.name"]) is None


@pytest.mark.parametrize(("connected", "rate", "ms", "status"), [
    (False, 100.0, 10.0, "unhealthy"),
    (True, 49.9, 10.0, "unhealthy"),
    (True, 100.0, 10_001.0, "unhealthy"),
    (True, 89.9, 10.0, "degraded"),
    (True, 100.0, 5_001.0, "degraded"),
    (True, 90.0, 5_000.0, "healthy"),
    (None, 100.0, 0.0, "healthy"),
])
def test_health_thresholds(connected: bool | None, rate: float, ms: float,
                           status: str) -> None:
    assert classify(connected, rate, ms) == status


@pytest.mark.parametrize(("name", "kind"), [
    ("The Laugh Factory", "comedy_club"), ("Comedy Cellar", "comedy_club"),
    ("Blue Note Music Hall", "music_venue"), ("Old Vic Theatre", "theater"),
    ("Glastonbury Festival", "festival"), ("Town Hall", "standard"), (None, "standard"),
])
def test_venue_type_detection(name: str | None, kind: str) -> None:
    assert detect_venue_type(name) == kind


def test_concurrency_extras_narrow_only_the_entity_they_name() -> None:
    square = RateLimit(requests_per_second=10, max_concurrency=4,
                       extra={"catalog_write_concurrency": 1.0})
    assert push_concurrency(square, "product") == 1
    assert push_concurrency(square, "customer") == 4
    assert push_concurrency(RateLimit(requests_per_second=1, max_concurrency=3,
                                      extra={"write_concurrency": 2.0}), "customer") == 2


def test_concurrency_follows_a_slow_rate() -> None:
    qbo = RateLimit(requests_per_second=10, max_concurrency=10)
    assert push_concurrency(qbo, "customer", rate=40 / 60) == 2
    assert push_concurrency(qbo, "customer", rate=100.0) == 10


def test_pace_slows_pushes_that_make_several_calls() -> None:
    from daemon.sync.engine import _Pace

    pacer = Pacer(rate=10.0)
    pace = _Pace(push_rate=10.0, request_rate=10.0, base=5)
    pace.observe(7, pacer)  # first push made two calls
    assert pacer.interval == pytest.approx(0.2)
    pace.observe(8, pacer)  # then one: 3 calls over 2 pushes
    assert pacer.interval == pytest.approx(0.15)
    pace.observe(1, pacer)  # a new client after a refresh
    assert pacer.interval == pytest.approx(0.1)
