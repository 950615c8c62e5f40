"""Each bundled plugin stays within its provider's documented limits.

The limits are written here as the providers document them (shared/reference/providers.md,
and the published API descriptions in shared/specs where they state them), never read from
the plugin under test: a plugin constant set too high fails here, and is refused by the
emulator, which keeps its own copy of the documented values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from daemon.plugins import load_plugins
from daemon.provider import Capabilities, Entity
from plugins.mailchimp import capabilities as mailchimp
from plugins.mailchimp import emulator as mailchimp_emulator
from plugins.quickbooks import capabilities as quickbooks
from plugins.quickbooks import emulator as quickbooks_emulator
from plugins.square import capabilities as square
from plugins.square import emulator as square_emulator
from plugins.stripe import capabilities as stripe
from plugins.stripe import emulator as stripe_emulator

# Records per call each endpoint takes, as documented (providers.md, section of the provider).
DOCUMENTED_BATCH: dict[str, dict[Entity, int]] = {
    # POST /v2/catalog/batch-upsert: <=10,000 objects per request, and a product is an ITEM
    # with its ITEM_VARIATION (2 objects); POST /v2/customers/bulk-create: 1-100 entries;
    # orders one at a time.
    "square": {Entity.PRODUCT: 10_000 // 2, Entity.CUSTOMER: 100, Entity.TRANSACTION: 1,
               Entity.INVENTORY: 100},
    # No batch endpoints for products, customers or invoices in v1.
    "stripe": {Entity.PRODUCT: 1, Entity.CUSTOMER: 1, Entity.TRANSACTION: 1},
    # Batch subscribe: up to 500 members per call; store products and orders one at a time.
    "mailchimp": {Entity.CUSTOMER: 500, Entity.PRODUCT: 1, Entity.TRANSACTION: 1},
    # POST /batch: at most 30 items (Intuit's limits page).
    "quickbooks": {Entity.PRODUCT: 30, Entity.CUSTOMER: 30, Entity.TRANSACTION: 30},
}

# Requests per second and simultaneous requests, as documented (sandbox or the lower figure).
DOCUMENTED_RATE: dict[str, dict[str, float]] = {
    # Square publishes no numbers; one catalog write per seller at a time.
    "square": {"catalog_write_concurrency": 1},
    # Sandbox/test mode 25 req/s (live 100); endpoints default to 25 req/s.
    "stripe": {"requests_per_second": 25},
    # At most 10 simultaneous connections per user.
    "mailchimp": {"max_concurrency": 10},
    # 10 req/s per realm+app, 500 req/min per realm, 40 batch calls/min per realm+app.
    "quickbooks": {"requests_per_second": 10, "requests_per_minute": 500,
                   "batch_per_minute": 40},
}

# Other documented limits next to the plugin's and the emulator's constant of the same name.
DOCUMENTED_CONSTANTS: list[tuple[str, Any, Any, str, int]] = [
    # (label, plugin module, emulator module, constant, documented value)
    ("square", square, square_emulator, "MAX_BATCH_OBJECTS", 1000),
    ("square", square, square_emulator, "MAX_REQUEST_OBJECTS", 10_000),
    ("square", square, square_emulator, "MAX_BULK_CUSTOMERS", 100),
    ("square", square, square_emulator, "CATALOG_IDEMPOTENCY_MAX", 128),
    ("square", square, square_emulator, "ORDER_IDEMPOTENCY_MAX", 192),
    ("square", square, square_emulator, "PAYMENT_IDEMPOTENCY_MAX", 45),
    ("square", square, square_emulator, "MAX_INVENTORY_CHANGES", 100),
    ("square", square, square_emulator, "INVENTORY_IDEMPOTENCY_MAX", 128),
    ("stripe", stripe, stripe_emulator, "IDEMPOTENCY_KEY_MAX", 255),
    ("mailchimp", mailchimp, mailchimp_emulator, "BATCH_SUBSCRIBE_MAX", 500),
    ("mailchimp", mailchimp, mailchimp_emulator, "MEMBER_PAGE_MAX", 1000),
    ("quickbooks", quickbooks, quickbooks_emulator, "BATCH_MAX", 30),
    ("quickbooks", quickbooks, quickbooks_emulator, "QUERY_PAGE_MAX", 1000),
]


def _capabilities(name: str) -> Capabilities:
    caps: Capabilities = load_plugins().provider(name).capabilities
    return caps


@pytest.mark.parametrize("name", sorted(DOCUMENTED_BATCH))
def test_declared_batch_sizes_are_within_the_documented_ones(name: str) -> None:
    caps = _capabilities(name)
    assert set(caps.entities) <= set(DOCUMENTED_BATCH[name])
    for entity, support in caps.entities.items():
        assert 1 <= support.batch_size <= DOCUMENTED_BATCH[name][entity], (entity, support)


@pytest.mark.parametrize("name", sorted(DOCUMENTED_RATE))
def test_declared_rates_are_within_the_documented_ones(name: str) -> None:
    limit = _capabilities(name).rate_limit
    declared = {"requests_per_second": limit.requests_per_second,
                "max_concurrency": limit.max_concurrency, **limit.extra}
    for key, documented in DOCUMENTED_RATE[name].items():
        assert declared[key] is not None, key
        assert declared[key] <= documented, (key, declared[key], documented)


@pytest.mark.parametrize(("label", "plugin", "emulator", "constant", "documented"),
                         DOCUMENTED_CONSTANTS,
                         ids=[f"{c[0]}.{c[3]}" for c in DOCUMENTED_CONSTANTS])
def test_plugin_constants_are_within_and_emulators_hold_the_documented_limits(
    label: str, plugin: Any, emulator: Any, constant: str, documented: int,
) -> None:
    assert getattr(plugin, constant) <= documented
    assert getattr(emulator, constant) == documented
    # The emulator's constant is its own, not imported from the plugin.
    assert f"from plugins.{label}.capabilities" not in _source(emulator)


def test_quickbooks_emulator_refuses_minor_versions_intuit_dropped() -> None:
    assert quickbooks_emulator.MIN_MINOR_VERSION == 75
    assert quickbooks.MIN_MINOR_VERSION >= 75


def _source(module: Any) -> str:
    return Path(module.__file__).read_text()
