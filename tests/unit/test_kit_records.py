"""The kit's synthetic records, keys and tampering helpers, and the scaffold's names."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.mapping import SOURCE_FIELDS, content_hash, get_path, parse_entity_mapping
from daemon.provider import Entity
from daemon.scaffold import ScaffoldError, plugin_names, render
from daemon.testing.kit import chunks, idempotency_key, signature_header, source_record
from daemon.testing.kit._checks import _corrupt, _flip
from daemon.testing.kit._records import outbound_records


@pytest.mark.parametrize("entity", list(Entity))
def test_source_records_fill_every_source_field(entity: Entity) -> None:
    record = source_record(entity, 3, "r")
    for path in SOURCE_FIELDS[entity]:
        assert get_path(record, path) is not None, path


def test_source_records_are_deterministic_and_distinct() -> None:
    assert source_record(Entity.CUSTOMER, 1) == source_record(Entity.CUSTOMER, 1)
    a, b = source_record(Entity.CUSTOMER, 1), source_record(Entity.CUSTOMER, 2)
    assert a["customer"]["email"] != b["customer"]["email"]
    assert a["customer"]["id"] != b["customer"]["id"]
    assert source_record(Entity.CUSTOMER, 1, "x") != source_record(Entity.CUSTOMER, 1, "y")


def test_idempotency_keys_follow_the_record_version() -> None:
    key = idempotency_key("acme", Entity.CUSTOMER, "c1", "h1")
    assert key == idempotency_key("acme", Entity.CUSTOMER, "c1", "h1")
    assert len(key) == 36
    assert key != idempotency_key("acme", Entity.CUSTOMER, "c1", "h2")
    assert key != idempotency_key("acme", Entity.PRODUCT, "c1", "h1")
    assert key != idempotency_key("other", Entity.CUSTOMER, "c1", "h1")


class _Template:
    """Just enough of a provider for outbound_records."""

    name = "acme"

    def default_templates(self) -> list[object]:
        from daemon.provider import TemplateSpec

        return [TemplateSpec("t", "acme", {"customer": {"email": "customer.email",
                                                        "name": "customer.full_name"}},
                             is_default=True)]


def test_outbound_records_are_mapped_hashed_and_keyed() -> None:
    provider = _Template()
    records = outbound_records(provider, Entity.CUSTOMER, 4, run="u")  # type: ignore[arg-type]
    assert [r.local_id for r in records] == [f"customer-u-{i}" for i in range(4)]
    for r in records:
        assert set(r.payload) == {"email", "name"}
        assert r.content_hash == content_hash(r.payload)
        assert r.idempotency_key == idempotency_key("acme", Entity.CUSTOMER, r.local_id,
                                                    r.content_hash)
        assert r.remote_id is None
    assert len({r.idempotency_key for r in records}) == 4
    with pytest.raises(LookupError, match="no product mapping"):
        outbound_records(provider, Entity.PRODUCT, 1)  # type: ignore[arg-type]
    explicit = outbound_records(provider, Entity.PRODUCT, 1,  # type: ignore[arg-type]
                                mapping=parse_entity_mapping({"name": "event.name"}))
    assert explicit[0].payload == {"name": "Name kit 0"}


def test_chunks_are_at_most_the_batch_size() -> None:
    records = outbound_records(_Template(), Entity.CUSTOMER, 7)  # type: ignore[arg-type]
    assert [len(c) for c in chunks(records, 3)] == [3, 3, 1]
    assert [len(c) for c in chunks(records, 1)] == [1] * 7
    assert [r for c in chunks(records, 3) for r in c] == records


@given(st.text(alphabet="abcdefABCDEF0123456789+/=,t", min_size=1))
def test_flip_changes_exactly_one_character(text: str) -> None:
    flipped = _flip(text)
    assert flipped != text
    if any(c.isalnum() for c in text.rstrip("=")):
        assert len(flipped) == len(text)
        assert sum(a != b for a, b in zip(text, flipped, strict=True)) == 1


def test_flip_keeps_base64_padding() -> None:
    assert _flip("abc=") == "aba="
    assert _flip("t=1,v1=ab") == "t=1,v1=aa"


@pytest.mark.parametrize(("secret", "prefix", "suffix"), [
    ("sk_test_abcdef123", "sk_test_", ""),
    ("0123456789abcdef-us6", "", "-us6"),
    ("emulator_a_00ff", "emulator_a_", ""),
    ("plain", "", ""),
])
def test_corrupted_secrets_keep_their_shape(secret: str, prefix: str, suffix: str) -> None:
    bad = _corrupt(secret)
    assert bad != secret
    assert bad.startswith(prefix)
    assert bad.endswith(suffix)


def test_signature_header_is_found_or_asked_for() -> None:
    assert signature_header({"Stripe-Signature": "t=1", "Content-Type": "x"}) == \
        "Stripe-Signature"
    assert signature_header({"intuit-signature": "x"}, "Intuit-Signature") == \
        "intuit-signature"
    with pytest.raises(AssertionError, match="set signature_header"):
        signature_header({"A-Signature": "1", "B-Signature": "2"})
    with pytest.raises(AssertionError, match="set signature_header"):
        signature_header({"Content-Type": "x"})


@pytest.mark.parametrize(("raw", "name", "dist", "package", "cls"), [
    ("acme", "acme", "syncd-acme", "syncd_acme", "Acme"),
    ("acme-crm", "acme_crm", "syncd-acme-crm", "syncd_acme_crm", "AcmeCrm"),
    ("syncd-hubspot2", "hubspot2", "syncd-hubspot2", "syncd_hubspot2", "Hubspot2"),
])
def test_plugin_names(raw: str, name: str, dist: str, package: str, cls: str) -> None:
    names = plugin_names(raw)
    assert (names.name, names.dist, names.package, names.cls) == (name, dist, package, cls)


@pytest.mark.parametrize("raw", ["", "acme!", "9lives", "a b", "import", "-x", "x_"])
def test_bad_plugin_names_are_refused(raw: str) -> None:
    with pytest.raises(ScaffoldError, match="invalid plugin name"):
        plugin_names(raw)


def test_render_fills_every_placeholder_and_refuses_a_used_directory(tmp_path: Path) -> None:
    written = render(plugin_names("acme"), tmp_path / "out")
    assert written
    for path in written:
        assert "{{" not in path.read_text(), path
        assert "__package__" not in str(path)
    with pytest.raises(ScaffoldError, match="not an empty directory"):
        render(plugin_names("acme"), tmp_path / "out")
