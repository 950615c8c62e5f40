"""What the Mailchimp provider declares: entities, field catalogue, limits, auth, options.

Targets (the left side of a mapping) are paths in the Mailchimp record the client sends:

- customer -> audience (list) member: ``email_address``, ``merge_fields.*``, ``tags``...
  ``marketing_opt_in`` is the one syncd field: it chooses the status of a *new* member
  (``subscribed``, or ``pending`` with ``double_opt_in``, when true; ``transactional`` when
  false). The status of an existing member is Mailchimp's: an unsubscribe there is pulled back,
  never overwritten by a push.
- product -> e-commerce store product with one variant (needs ``options.store_id``).
- transaction -> e-commerce store order with its lines (needs ``options.store_id``).

Facts and sources: docs/providers/mailchimp.md and the provider reference.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

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

__all__ = ["BATCH_SUBSCRIBE_MAX", "CAPABILITIES", "MEMBER_PAGE_MAX", "MailchimpOptions"]

#: Members one ``POST /lists/{list_id}`` batch subscribe may carry.
BATCH_SUBSCRIBE_MAX = 500
#: Largest ``count`` of one page.
MEMBER_PAGE_MAX = 1000

_MEMBER_FIELDS = (
    FieldSpec("email_address", "email", required=True, max_length=255,
              description="The member's email; its lower-case MD5 is the member id."),
    FieldSpec("marketing_opt_in", "boolean",
              description="syncd: status of a new member, subscribed (or pending with "
              "double_opt_in) when true, transactional when false."),
    FieldSpec("merge_fields.FNAME", "string", description="First name merge field."),
    FieldSpec("merge_fields.LNAME", "string", description="Last name merge field."),
    FieldSpec("merge_fields.PHONE", "string", description="Phone merge field."),
    FieldSpec("merge_fields.COMPANY", "string", description="Company merge field."),
    FieldSpec("merge_fields.BIRTHDAY", "string", description="Birthday merge field, MM/DD."),
    FieldSpec("merge_fields.SOURCE", "string",
              description="A text merge field the audience must define (e.g. venue name)."),
    FieldSpec("merge_fields.VENUE", "string",
              description="A text merge field the audience must define."),
    FieldSpec("tags", "list", description="Tag names; added, never removed."),
    FieldSpec("language", "string", max_length=5, description="Language code, e.g. en."),
    FieldSpec("vip", "boolean", description="VIP flag."),
)

#: What a member's changes carry back (webhooks and pulls alike): see webhooks.member_fields.
_MEMBER_INBOUND = (
    FieldSpec("email_address", "email", description="The member's email."),
    FieldSpec("status", "string",
              description="subscribed, unsubscribed, cleaned, pending or transactional."),
    FieldSpec("subscribed", "boolean",
              description="Marketing consent: true when subscribed, false when "
              "unsubscribed, cleaned or transactional; absent while pending or unknown."),
    FieldSpec("merge_fields.FNAME", "string", description="First name merge field."),
    FieldSpec("merge_fields.LNAME", "string", description="Last name merge field."),
    FieldSpec("merge_fields.PHONE", "string", description="Phone merge field."),
)

_PRODUCT_FIELDS = (
    FieldSpec("title", "string", required=True, description="Product title."),
    FieldSpec("description", "string"),
    FieldSpec("url", "string", description="Product page URL."),
    FieldSpec("image_url", "string"),
    FieldSpec("vendor", "string", description="e.g. the venue name."),
    FieldSpec("type", "string", description="Product type, e.g. the event category."),
    FieldSpec("handle", "string"),
    FieldSpec("published_at_foreign", "datetime", description="When the event went on sale."),
    FieldSpec("variants.0.title", "string",
              description="The single variant's title (defaults to the product title)."),
    FieldSpec("variants.0.price", "decimal", description="Ticket price, e.g. '12.50'."),
    FieldSpec("variants.0.sku", "string"),
    FieldSpec("variants.0.inventory_quantity", "integer", description="Tickets available."),
)

_ORDER_FIELDS = (
    FieldSpec("currency_code", "currency", required=True, description="ISO 4217 code."),
    FieldSpec("order_total", "decimal", required=True, description="Order total, e.g. '25.00'."),
    FieldSpec("processed_at_foreign", "datetime", description="When the order was placed."),
    FieldSpec("financial_status", "string", description="paid, pending, refunded, cancelled."),
    FieldSpec("customer.email_address", "email", required=True,
              description="The buyer; the store customer id is the MD5 of the email."),
    FieldSpec("customer.first_name", "string"),
    FieldSpec("customer.last_name", "string"),
    FieldSpec("customer.opt_in_status", "boolean",
              description="Subscribe the buyer to the store's audience."),
    FieldSpec("lines.0.product_id", "string", required=True,
              description="The local product (event) id the line sells."),
    FieldSpec("lines.0.product_title", "string",
              description="Title for the store product when the order's product is not "
              "in the store yet."),
    FieldSpec("lines.0.quantity", "integer", required=True),
    FieldSpec("lines.0.price", "decimal", required=True, description="Line price."),
    FieldSpec("landing_site", "string"),
)

CAPABILITIES = Capabilities(
    provider="mailchimp",
    display_name="Mailchimp",
    entities={
        Entity.CUSTOMER: EntitySupport(
            entity=Entity.CUSTOMER,
            directions=frozenset({Direction.PUSH, Direction.PULL}),
            remote_kind="audience member",
            batch_size=BATCH_SUBSCRIBE_MAX,
            fields=_MEMBER_FIELDS,
            inbound_fields=_MEMBER_INBOUND,
            delete_policies=frozenset({"archive", "leave"}),
            notes="Batch subscribe POST /lists/{list_id} (500 members, update_existing). "
            "Pull: members changed since a time, unsubscribes included.",
        ),
        Entity.PRODUCT: EntitySupport(
            entity=Entity.PRODUCT,
            directions=frozenset({Direction.PUSH}),
            remote_kind="e-commerce product",
            batch_size=1,
            fields=_PRODUCT_FIELDS,
            delete_policies=frozenset({"delete", "leave"}),
            notes="PUT /ecommerce/stores/{store_id}/products/{id}; needs options.store_id.",
        ),
        Entity.TRANSACTION: EntitySupport(
            entity=Entity.TRANSACTION,
            directions=frozenset({Direction.PUSH}),
            remote_kind="e-commerce order",
            batch_size=1,
            fields=_ORDER_FIELDS,
            delete_policies=frozenset({"delete", "leave"}),
            notes="POST /ecommerce/stores/{store_id}/orders, PATCH when linked; needs "
            "options.store_id.",
        ),
    },
    # Mailchimp documents 10 simultaneous connections per user and no request rate; the
    # rate here only smooths bursts. Retry-After is not documented and a 429 is about
    # connections, which free up as calls finish: 0 means back off with jitter per request.
    # The connections are per user, not per API key or app: every venue whose audience is
    # in the same Mailchimp account shares them, on every replica (so does the smoothing).
    rate_limit=RateLimit(requests_per_second=25.0, burst=25, max_concurrency=10,
                         default_retry_after=0.0,
                         scopes={"max_concurrency": LimitScope.ACCOUNT,
                                 "requests_per_second": LimitScope.ACCOUNT}),
    auth=AuthKind.API_KEY,
    oauth=OAuthSpec(
        authorize_url="https://login.mailchimp.com/oauth2/authorize",
        token_url="https://login.mailchimp.com/oauth2/token",  # noqa: S106 - a URL
        revoke_url=None,
        scopes=(),
        rotates_refresh_token=False,
        access_token_ttl=None,
        token_auth="form",  # noqa: S106 - a method, not a secret
    ),
    credential_keys=("api_key",),
    webhooks=True,
    unsupported=(
        "idempotency keys: Mailchimp has none; member PUT and batch subscribe with "
        "update_existing are idempotent upserts by design",
        "pulling products and orders: push only",
        "removing tags on push: tags are only added",
        "changing an existing member's subscription status on push: Mailchimp owns it",
        "OAuth refresh: tokens do not expire and there is no refresh token",
        "sandbox: Mailchimp has no sandbox environment",
    ),
    base_url="https://api.mailchimp.com/3.0",
)


class MailchimpOptions(BaseModel):
    """The ``options:`` block of a Mailchimp integration in venue YAML."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    list_id: str = Field(min_length=1, max_length=64,
                         description="The audience (list) members are synced to.")
    store_id: str | None = Field(
        default=None, min_length=1, max_length=50,
        description="The e-commerce store for products and orders; needed to push them.")
    store_currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$",
                                description="Currency of the store, when syncd creates it.")
    double_opt_in: bool = Field(
        default=False, description="New opted-in members get status 'pending' and a "
        "confirmation email instead of 'subscribed'.")
    skip_merge_validation: bool = Field(
        default=False, description="Accept members whose required merge fields are empty.")
    data_center: str | None = Field(
        default=None, pattern=r"^[a-z]+[0-9]+$",
        description="Data centre (us6) when not taken from the API key's suffix.")
