"""What the QuickBooks Online provider declares: entities, field catalogue, limits, auth, options.

Targets are paths in the QuickBooks Accounting v3 entity the client sends:

- product -> ``Item`` (Service or NonInventory; ``Name`` is unique among items);
- customer -> ``Customer`` (``DisplayName`` is unique across customers, vendors and employees);
- transaction -> ``SalesReceipt`` or ``Invoice`` (``options.transaction_kind``). The line's
  item is named by ``Line.0.SalesItemLineDetail.ItemRef.name`` and the buyer by
  ``CustomerRef.name`` (a DisplayName) or ``BillEmail.Address``; the client resolves both to
  QuickBooks ids.

Facts and sources: docs/providers/quickbooks.md and the provider reference.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

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

__all__ = [
    "BATCH_MAX",
    "CAPABILITIES",
    "MIN_MINOR_VERSION",
    "QUERY_PAGE_MAX",
    "QuickBooksOptions",
]

#: Items one ``/batch`` call may carry (Intuit's current recommended maximum).
BATCH_MAX = 30
#: Intuit dropped minor versions 1-74 on 2025-08-01.
MIN_MINOR_VERSION = 75
#: Largest MAXRESULTS of one query page.
QUERY_PAGE_MAX = 1000

_ITEM_FIELDS = (
    FieldSpec("Name", "string", required=True, max_length=100,
              description="Unique item name (e.g. the event name and date)."),
    FieldSpec("Description", "string", max_length=4000),
    FieldSpec("UnitPrice", "decimal", description="Ticket price, e.g. '12.50'."),
    FieldSpec("Sku", "string", max_length=100),
    FieldSpec("Type", "string", description="Service (default) or NonInventory."),
    FieldSpec("Taxable", "boolean"),
    FieldSpec("Active", "boolean"),
)

_CUSTOMER_FIELDS = (
    FieldSpec("DisplayName", "string", required=True, max_length=500,
              description="Unique across customers, vendors and employees."),
    FieldSpec("GivenName", "string", max_length=100),
    FieldSpec("FamilyName", "string", max_length=100),
    FieldSpec("CompanyName", "string", max_length=100),
    FieldSpec("PrimaryEmailAddr.Address", "email", max_length=100,
              description="Used to adopt an existing customer."),
    FieldSpec("PrimaryPhone.FreeFormNumber", "string", max_length=30),
    FieldSpec("Notes", "string", max_length=2000),
    FieldSpec("Active", "boolean"),
)

#: What a pulled customer carries back (webhooks carry no values: a pull brings them).
CUSTOMER_INBOUND = (
    FieldSpec("DisplayName", "string"),
    FieldSpec("GivenName", "string"),
    FieldSpec("FamilyName", "string"),
    FieldSpec("PrimaryEmailAddr.Address", "email"),
    FieldSpec("PrimaryPhone.FreeFormNumber", "string"),
    FieldSpec("Active", "boolean"),
)
#: What a pulled item carries back.
ITEM_INBOUND = (
    FieldSpec("Name", "string"),
    FieldSpec("Description", "string"),
    FieldSpec("Active", "boolean"),
)

_SALE_FIELDS = (
    FieldSpec("Line.0.Amount", "decimal", required=True, description="Line amount."),
    FieldSpec("Line.0.Description", "string", max_length=4000),
    FieldSpec("Line.0.SalesItemLineDetail.ItemRef.name", "string", required=True,
              description="Name of the item sold (the event's item Name)."),
    FieldSpec("Line.0.SalesItemLineDetail.Qty", "integer"),
    FieldSpec("Line.0.SalesItemLineDetail.UnitPrice", "decimal"),
    FieldSpec("CustomerRef.name", "string",
              description="The buyer's customer DisplayName (required for invoices unless "
              "BillEmail matches a customer)."),
    FieldSpec("BillEmail.Address", "email", max_length=100,
              description="Buyer email; also used to find the customer."),
    FieldSpec("TxnDate", "date", description="Transaction date, YYYY-MM-DD."),
    FieldSpec("DocNumber", "string", max_length=21,
              description="Reference number; used to adopt a transaction already there."),
    FieldSpec("PrivateNote", "string", max_length=4000),
    FieldSpec("CurrencyRef.value", "currency", description="Only with multicurrency on."),
)

CAPABILITIES = Capabilities(
    provider="quickbooks",
    display_name="QuickBooks Online",
    entities={
        Entity.PRODUCT: EntitySupport(
            entity=Entity.PRODUCT,
            directions=frozenset({Direction.PUSH, Direction.PULL}),
            remote_kind="item",
            batch_size=BATCH_MAX,
            fields=_ITEM_FIELDS,
            inbound_fields=ITEM_INBOUND,
            delete_policies=frozenset({"archive", "leave"}),
            notes="Items are made inactive, never deleted (QuickBooks keeps them for history).",
        ),
        Entity.CUSTOMER: EntitySupport(
            entity=Entity.CUSTOMER,
            directions=frozenset({Direction.PUSH, Direction.PULL}),
            remote_kind="customer",
            batch_size=BATCH_MAX,
            fields=_CUSTOMER_FIELDS,
            inbound_fields=CUSTOMER_INBOUND,
            delete_policies=frozenset({"archive", "leave"}),
            notes="A DisplayName clash (6240) adopts the customer with that name or email.",
        ),
        Entity.TRANSACTION: EntitySupport(
            entity=Entity.TRANSACTION,
            directions=frozenset({Direction.PUSH, Direction.PULL}),
            remote_kind="sales receipt",
            batch_size=BATCH_MAX,
            fields=_SALE_FIELDS,
            delete_policies=frozenset({"delete", "leave"}),
            notes="Sales receipt, or invoice with options.transaction_kind: invoice.",
        ),
    },
    rate_limit=RateLimit(
        # 10 requests/s per realm+app; 500/min per realm; 40 batch calls/min per realm+app.
        requests_per_second=10.0,
        burst=10,
        max_concurrency=10,
        extra={"requests_per_minute": 500.0, "batch_per_minute": 40.0},
        default_retry_after=60.0,
        # 500/min counts every app's calls on the realm; the per-second and batch limits
        # (and the older 10-concurrent policy) count this app's calls on the realm.
        scopes={"requests_per_minute": LimitScope.ACCOUNT,
                "requests_per_second": LimitScope.APP,
                "batch_per_minute": LimitScope.APP,
                "max_concurrency": LimitScope.APP},
    ),
    auth=AuthKind.OAUTH,
    oauth=OAuthSpec(
        authorize_url="https://appcenter.intuit.com/connect/oauth2",
        token_url="https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer",  # noqa: S106 - a URL
        revoke_url="https://developer.api.intuit.com/v2/oauth2/tokens/revoke",
        scopes=("com.intuit.quickbooks.accounting",),
        sandbox_authorize_url="https://appcenter.intuit.com/connect/oauth2",
        sandbox_token_url="https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer",  # noqa: S106 - a URL
        rotates_refresh_token=True,
        pkce=False,
        access_token_ttl=timedelta(seconds=3600),
        refresh_token_ttl=timedelta(days=100),
        token_auth="basic",  # noqa: S106 - a method, not a secret
        callback_params=("realmId",),
    ),
    credential_keys=("access_token",),
    webhooks=True,
    unsupported=(
        "deleting items and customers: QuickBooks only makes them inactive (archive)",
        "transactions pulled are reported as changes, not imported as platform orders",
        "multicurrency amounts unless the company has multicurrency turned on",
    ),
    base_url="https://quickbooks.api.intuit.com",
    sandbox_base_url="https://sandbox-quickbooks.api.intuit.com",
)


class QuickBooksOptions(BaseModel):
    """The ``options:`` block of a QuickBooks integration in venue YAML.

    The company (``realm_id``) is an account fact that arrives with the OAuth callback, not an
    option.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    transaction_kind: Literal["sales_receipt", "invoice"] = Field(
        default="sales_receipt", description="What a ticket sale becomes.")
    income_account_ref: str | None = Field(
        default=None, min_length=1, max_length=20,
        description="Id of the income account new items post to (QuickBooks requires one "
        "for Service items).")
    deposit_account_ref: str | None = Field(
        default=None, min_length=1, max_length=20,
        description="Id of the account sales receipts deposit to (default: Undeposited Funds).")
    item_type: Literal["Service", "NonInventory"] = Field(
        default="Service", description="Type of items syncd creates.")
    minor_version: int = Field(default=MIN_MINOR_VERSION, ge=MIN_MINOR_VERSION, le=999)
