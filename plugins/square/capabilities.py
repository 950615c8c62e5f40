"""What the Square provider declares: entities, field catalogue, limits, OAuth facts.

Target paths here are the keys of a mapped record (``OutboundRecord.payload``); the client
(:mod:`plugins.square.client`) turns them into Square objects:

- product -> a catalog ``ITEM`` with one ``ITEM_VARIATION`` (the ticket price);
- customer -> a ``Customer`` (adopted by ``reference_id``, then by e-mail, before creating);
- transaction -> an ``Order`` with one line item, paid with an ``EXTERNAL`` payment (the
  money was taken by the ticketing platform; Square records the sale);
- inventory -> the ``IN_STOCK`` count of the product's item variation at the integration's
  location, kept with relative ``ADJUSTMENT`` changes (docs/inventory.md); counts come back
  by the ``inventory.count.updated`` webhook and by pulls.

Facts and sources: ``docs/providers/square.md`` and the shared provider reference.
"""

from __future__ import annotations

from datetime import timedelta

from daemon.provider import (
    AuthKind,
    Capabilities,
    Direction,
    Entity,
    EntitySupport,
    FieldSpec,
    LimitScope,
    OAuthSpec,
    RateLimit,
)

__all__ = [
    "CATALOG_IDEMPOTENCY_MAX",
    "CUSTOMER_FIELDS",
    "CUSTOMER_IDEMPOTENCY_MAX",
    "INVENTORY_FIELDS",
    "INVENTORY_IDEMPOTENCY_MAX",
    "MAX_BATCH_OBJECTS",
    "MAX_BULK_CUSTOMERS",
    "MAX_INVENTORY_CHANGES",
    "MAX_REQUEST_OBJECTS",
    "ORDER_FIELDS",
    "ORDER_IDEMPOTENCY_MAX",
    "PAYMENT_IDEMPOTENCY_MAX",
    "PRODUCT_FIELDS",
    "SQUARE_CAPABILITIES",
    "SQUARE_VERSION",
]

#: ``Square-Version`` sent on every call (the version of the spec in ../shared/specs).
SQUARE_VERSION = "2025-08-20"

#: Catalog batch-upsert limits (api.json ``BatchUpsertCatalogObjectsRequest``).
MAX_BATCH_OBJECTS = 1000
MAX_REQUEST_OBJECTS = 10_000
#: Customers bulk-create takes 1-100 entries (api.json ``BulkCreateCustomersRequest``).
MAX_BULK_CUSTOMERS = 100
#: Idempotency key maximum lengths per endpoint (api.json).
CATALOG_IDEMPOTENCY_MAX = 128
ORDER_IDEMPOTENCY_MAX = 192
PAYMENT_IDEMPOTENCY_MAX = 45
#: Customers: the spec sets no maximum; we keep to the catalogue's 128 to be safe.
CUSTOMER_IDEMPOTENCY_MAX = 128
#: BatchChangeInventory: at most 100 changes a request (Square's documented limit; api.json
#: gives no maxItems) and an idempotency key of 1-128 characters (api.json).
MAX_INVENTORY_CHANGES = 100
INVENTORY_IDEMPOTENCY_MAX = 128

PRODUCT_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("name", "string", required=True, max_length=512,
              description="item_data.name: the event's name as sold"),
    FieldSpec("description", "string", max_length=4096, description="item_data.description"),
    FieldSpec("abbreviation", "string", max_length=24, description="item_data.abbreviation"),
    FieldSpec("variation.name", "string", max_length=255,
              description="item_variation_data.name (default 'General admission')"),
    FieldSpec("variation.sku", "string", max_length=255, description="item_variation_data.sku"),
    FieldSpec("variation.track_inventory", "boolean",
              description="item_variation_data.track_inventory: true when the inventory "
                          "entity keeps the event's count, so register sales lower it"),
    FieldSpec("variation.price_money.amount", "money", required=True,
              description="item_variation_data.price_money.amount, minor units"),
    FieldSpec("variation.price_money.currency", "currency", required=True,
              description="item_variation_data.price_money.currency, ISO 4217"),
)

CUSTOMER_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("email_address", "email", required=True, max_length=254,
              description="the buyer's e-mail; also how an existing customer is adopted"),
    FieldSpec("given_name", "string", max_length=300),
    FieldSpec("family_name", "string", max_length=300),
    FieldSpec("company_name", "string", max_length=500),
    FieldSpec("nickname", "string", max_length=100),
    FieldSpec("phone_number", "string", max_length=32, description="E.164 preferred"),
    FieldSpec("reference_id", "string", max_length=100,
              description="the platform's customer id; adopted by it before e-mail"),
    FieldSpec("note", "string", max_length=500),
    FieldSpec("birthday", "date", description="YYYY-MM-DD"),
)

ORDER_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("reference_id", "string", required=True, max_length=40,
              description="the platform's order id"),
    FieldSpec("line_item.name", "string", required=True, max_length=512,
              description="the event (and ticket type) sold"),
    FieldSpec("line_item.quantity", "integer",
              description="tickets in the sale (default 1); the line's unit price is the "
                          "total divided by it when that divides evenly"),
    FieldSpec("line_item.note", "string", max_length=2000),
    FieldSpec("total_money.amount", "money", required=True,
              description="what the buyer paid, minor units; the EXTERNAL payment's amount"),
    FieldSpec("total_money.currency", "currency", required=True),
    FieldSpec("customer_email", "email",
              description="attach the order to the Square customer with this e-mail, if any"),
    FieldSpec("ticket_name", "string", max_length=30, description="order.ticket_name"),
)

INVENTORY_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("quantity", "integer", required=True,
              description="tickets the platform can still sell (event.remaining): what the "
                          "count at Square may offer"),
    FieldSpec("pos_sold", "integer", required=True,
              description="tickets the platform has recorded as sold at Square's register "
                          "(event.pos_sold); with quantity, what the count is adjusted from"),
)

SQUARE_CAPABILITIES = Capabilities(
    provider="square",
    display_name="Square",
    entities={
        Entity.PRODUCT: EntitySupport(
            entity=Entity.PRODUCT,
            directions=frozenset({Direction.PUSH}),
            remote_kind="catalog item",
            # Each product is an ITEM with its ITEM_VARIATION (2 objects) in a batch of its own,
            # so a rejected product fails alone; 10,000 objects per request -> 5,000 products.
            batch_size=MAX_REQUEST_OBJECTS // 2,
            fields=PRODUCT_FIELDS,
            delete_policies=frozenset({"delete", "leave"}),
            notes="catalog ITEM with one ITEM_VARIATION, via POST /v2/catalog/batch-upsert "
                  "(<=1,000 objects per batch, <=10,000 per request, one catalog write per "
                  "seller at a time); one batch per product",
        ),
        Entity.CUSTOMER: EntitySupport(
            entity=Entity.CUSTOMER,
            directions=frozenset({Direction.PUSH}),
            remote_kind="customer",
            batch_size=MAX_BULK_CUSTOMERS,
            fields=CUSTOMER_FIELDS,
            inbound_fields=(
                FieldSpec("given_name", "string"),
                FieldSpec("family_name", "string"),
                FieldSpec("email_address", "email"),
                FieldSpec("phone_number", "string"),
            ),
            notes="bulk-create (1-100) and bulk-update; adopts an existing customer by "
                  "reference_id, then by exact e-mail search",
        ),
        Entity.TRANSACTION: EntitySupport(
            entity=Entity.TRANSACTION,
            directions=frozenset({Direction.PUSH}),
            remote_kind="order",
            batch_size=1,
            fields=ORDER_FIELDS,
            notes="POST /v2/orders then an EXTERNAL payment for the order total; orders are "
                  "write-once (a changed sale is reported, not rewritten)",
            # A paid order cannot be rewritten: later changes of a sale are not sent (the
            # engine reports them as frozen) and the client refuses them too.
            write_once=True,
        ),
        Entity.INVENTORY: EntitySupport(
            entity=Entity.INVENTORY,
            directions=frozenset({Direction.PUSH, Direction.PULL}),
            remote_kind="inventory count",
            batch_size=MAX_INVENTORY_CHANGES,
            fields=INVENTORY_FIELDS,
            depends_on=Entity.PRODUCT,
            notes="the IN_STOCK count of the event's item variation at the location, moved "
                  "by ADJUSTMENTs only (POST /v2/inventory/changes/batch-create, <=100 "
                  "changes); counts come back by webhook and POST "
                  "/v2/inventory/counts/batch-retrieve",
        ),
    },
    # Square publishes no numeric limits (staff: back off exponentially on 429). 10 req/s
    # with 4 in flight is our conservative assumption, not a documented figure, applied per
    # seller account; one catalog write at a time per seller is documented.
    rate_limit=RateLimit(requests_per_second=10.0, burst=10, max_concurrency=4,
                         extra={"catalog_write_concurrency": 1.0}, default_retry_after=1.0,
                         scopes={"requests_per_second": LimitScope.ACCOUNT,
                                 "max_concurrency": LimitScope.ACCOUNT,
                                 "catalog_write_concurrency": LimitScope.ACCOUNT}),
    auth=AuthKind.OAUTH,
    oauth=OAuthSpec(
        authorize_url="https://connect.squareup.com/oauth2/authorize",
        token_url="https://connect.squareup.com/oauth2/token",  # noqa: S106 - a URL
        revoke_url="https://connect.squareup.com/oauth2/revoke",
        scopes=("ITEMS_READ", "ITEMS_WRITE", "CUSTOMERS_READ", "CUSTOMERS_WRITE",
                "ORDERS_READ", "ORDERS_WRITE", "PAYMENTS_WRITE", "MERCHANT_PROFILE_READ",
                "INVENTORY_READ", "INVENTORY_WRITE"),
        sandbox_authorize_url="https://connect.squareupsandbox.com/oauth2/authorize",
        sandbox_token_url="https://connect.squareupsandbox.com/oauth2/token",  # noqa: S106
        # Code flow: the refresh token is multi-use, never expires, and is not rotated.
        # (With PKCE it is single-use, lives 90 days and rotates; syncd uses the code flow.)
        rotates_refresh_token=False,
        pkce=False,
        access_token_ttl=timedelta(days=30),
        refresh_token_ttl=None,
        token_auth="form",  # noqa: S106 - client_id/client_secret in the JSON body
    ),
    credential_keys=("access_token",),
    webhooks=True,
    unsupported=(
        "pulling catalog items, customers or orders from Square (only inventory counts "
        "come back)",
        "changing an order after it was created and paid (Square orders are write-once)",
        "several variations per item (one ticket price per event)",
        "archiving catalog items (delete or leave)",
    ),
    base_url="https://connect.squareup.com",
    sandbox_base_url="https://connect.squareupsandbox.com",
)
