"""What the Stripe provider declares: entities, field catalogue, limits, Connect OAuth facts.

Target paths are the keys of a mapped record; the client (:mod:`plugins.stripe.client`)
turns them into form-encoded Stripe calls:

- product -> a ``Product`` with a deterministic ``id`` (create, or update when it exists),
  and its ``default_price`` (prices are immutable: a changed price is a new ``Price`` that
  becomes the product's default);
- customer -> a ``Customer`` (adopted by exact ``GET /v1/customers?email=`` lookup);
- transaction -> an ``Invoice`` with one invoice item, finalized and paid out of band (the
  platform took the money; Stripe records the sale against the customer).

Facts and sources:
``docs/providers/stripe.md`` and the shared provider reference.
"""

from __future__ import annotations

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
    "CUSTOMER_FIELDS",
    "IDEMPOTENCY_KEY_MAX",
    "INVOICE_FIELDS",
    "PRODUCT_FIELDS",
    "STRIPE_CAPABILITIES",
]

#: Stripe keys may be up to 255 characters (docs.stripe.com/idempotency).
IDEMPOTENCY_KEY_MAX = 255

PRODUCT_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("name", "string", required=True, description="the event's name"),
    FieldSpec("description", "string"),
    FieldSpec("active", "boolean", description="false hides the product from new sales"),
    FieldSpec("url", "string", description="the event's public page"),
    FieldSpec("statement_descriptor", "string", max_length=22),
    FieldSpec("unit_label", "string", max_length=12, description="e.g. 'ticket'"),
    FieldSpec("price.unit_amount", "money", required=True,
              description="ticket price in minor units (a new Price when it changes)"),
    FieldSpec("price.currency", "currency", required=True, description="ISO 4217, any case"),
    FieldSpec("metadata.event_id", "string", max_length=500),
    FieldSpec("metadata.venue_id", "string", max_length=500),
    FieldSpec("metadata.starts_at", "string", max_length=500),
    FieldSpec("metadata.category", "string", max_length=500),
)

CUSTOMER_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("email", "email", required=True, max_length=512,
              description="exact-match adoption key (Stripe's lookup is case-sensitive)"),
    FieldSpec("name", "string", max_length=256),
    FieldSpec("phone", "string", max_length=20),
    FieldSpec("description", "string"),
    FieldSpec("metadata.customer_id", "string", max_length=500),
    FieldSpec("metadata.venue_id", "string", max_length=500),
    FieldSpec("metadata.marketing_opt_in", "string", max_length=500),
)

INVOICE_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("customer_email", "email", required=True, max_length=512,
              description="the buyer; adopted by exact e-mail lookup or created"),
    FieldSpec("customer_name", "string", max_length=256,
              description="name for a customer created for the sale"),
    FieldSpec("description", "string", required=True, max_length=500,
              description="the invoice line, e.g. the event's name"),
    FieldSpec("amount", "money", required=True, description="what the buyer paid, minor units"),
    FieldSpec("currency", "currency", required=True, description="ISO 4217, any case"),
    FieldSpec("metadata.order_id", "string", max_length=500),
    FieldSpec("metadata.event_id", "string", max_length=500),
    FieldSpec("metadata.venue_id", "string", max_length=500),
)

STRIPE_CAPABILITIES = Capabilities(
    provider="stripe",
    display_name="Stripe",
    entities={
        Entity.PRODUCT: EntitySupport(
            entity=Entity.PRODUCT,
            directions=frozenset({Direction.PUSH}),
            remote_kind="product",
            batch_size=1,  # Stripe v1 has no batch endpoints
            fields=PRODUCT_FIELDS,
            delete_policies=frozenset({"archive", "leave"}),
            notes="deterministic product id; a changed price is a new Price set as the "
                  "product's default_price",
        ),
        Entity.CUSTOMER: EntitySupport(
            entity=Entity.CUSTOMER,
            directions=frozenset({Direction.PUSH}),
            remote_kind="customer",
            batch_size=1,
            fields=CUSTOMER_FIELDS,
            inbound_fields=(
                FieldSpec("name", "string", description="Full name."),
                FieldSpec("email", "email"),
                FieldSpec("phone", "string"),
            ),
            delete_policies=frozenset({"delete", "leave"}),
            notes="adopts an existing customer by exact e-mail lookup before creating",
        ),
        Entity.TRANSACTION: EntitySupport(
            entity=Entity.TRANSACTION,
            directions=frozenset({Direction.PUSH}),
            remote_kind="invoice paid out of band",
            batch_size=1,
            fields=INVOICE_FIELDS,
            notes="a draft invoice with one invoice item, finalized and marked paid out of "
                  "band (the platform took the money); write-once like a receipt",
            # A finalized, paid invoice cannot be rewritten: later changes of a sale are not
            # sent (the engine reports them as frozen) and the client refuses them too.
            write_once=True,
        ),
    },
    # docs.stripe.com/rate-limits: 25 req/s in test mode (100 in live mode) per account;
    # we stay at the test-mode figure so one setting is safe in both modes. Stripe also runs
    # a concurrency limiter per account whose figure is not published: 10 in flight is ours.
    # Both are per Stripe account, shared by every venue (and replica) using that account.
    rate_limit=RateLimit(requests_per_second=25.0, burst=25, max_concurrency=10,
                         extra={"live_mode_requests_per_second_documented": 100.0},
                         default_retry_after=1.0,
                         scopes={"requests_per_second": LimitScope.ACCOUNT,
                                 "max_concurrency": LimitScope.ACCOUNT}),
    auth=AuthKind.API_KEY,
    oauth=OAuthSpec(
        authorize_url="https://connect.stripe.com/oauth/authorize",
        token_url="https://connect.stripe.com/oauth/token",  # noqa: S106 - a URL
        revoke_url="https://connect.stripe.com/oauth/deauthorize",
        scopes=("read_write",),
        # Connect (Standard) access tokens do not expire; rotation of the refresh token is
        # not documented, so syncd stores whatever the token endpoint returns last.
        rotates_refresh_token=False,
        access_token_ttl=None,
        token_auth="form",  # noqa: S106 - client_secret as a form field
    ),
    credential_keys=("api_key",),
    webhooks=True,
    unsupported=(
        "changing a sale after its invoice was paid (invoices are write-once)",
        "charging buyers: sales are recorded as invoices paid out of band, no money moves",
        "pulling changes from Stripe (push only; webhooks are parsed into inbound changes)",
        "batch calls (Stripe v1 has none; records go one per call within the rate limit)",
        "deleting products (Stripe keeps products with prices; they are archived instead)",
    ),
    base_url="https://api.stripe.com",
    sandbox_base_url=None,
)
