"""The conformance kit: run any provider against its emulator through the contract.

A plugin author's whole test module can be::

    from daemon.testing.kit import ProviderConformance
    from syncd_acme import AcmeProvider

    class TestAcmeConformance(ProviderConformance):
        provider = AcmeProvider()

Each check is its own test: capabilities and templates, batching at the declared size,
idempotent retry, no duplicate after a simulated crash, 429 handling, authentication
failures, malformed answers classified rather than crashing, updates of write-once entities
refused, the webhook signature round trip with forged, tampered and stale deliveries
refused, webhook bodies nested thousands of levels deep handled without raising, and (when
the emulator or the test class has the provider's published description) requests made from
that description, each breaking it once, refused by the emulator. The
checks are also plain async functions (``check_*``) over a :class:`KitSession`, for use in
an author's own tests.
"""

from __future__ import annotations

from daemon.testing.kit._checks import (
    GARBAGE_ANSWERS,
    Garbage,
    WebhookShape,
    check_auth_failure,
    check_batching,
    check_capabilities,
    check_crash_recovery,
    check_default_templates,
    check_idempotent_retry,
    check_malformed_answers,
    check_rate_limit_429,
    check_webhook_deep_bodies,
    check_webhook_garbage,
    check_webhook_parse,
    check_webhook_refusals,
    check_webhook_verifies,
    check_write_once,
    garbage_server,
    push_until_done,
    pushable_entities,
    signature_header,
    write_once_entities,
)
from daemon.testing.kit._conformance import ProviderConformance
from daemon.testing.kit._described import (
    check_refused,
    described_operations,
    encode_form,
    invalid_request_strategy,
    names_field,
)
from daemon.testing.kit._records import (
    chunks,
    default_template,
    entity_mapping,
    idempotency_key,
    outbound_records,
    source_record,
)
from daemon.testing.kit._session import KitSession, VirtualClock, build_options

__all__ = [
    "GARBAGE_ANSWERS",
    "Garbage",
    "KitSession",
    "ProviderConformance",
    "VirtualClock",
    "WebhookShape",
    "build_options",
    "check_auth_failure",
    "check_batching",
    "check_capabilities",
    "check_crash_recovery",
    "check_default_templates",
    "check_idempotent_retry",
    "check_malformed_answers",
    "check_rate_limit_429",
    "check_refused",
    "check_webhook_deep_bodies",
    "check_webhook_garbage",
    "check_webhook_parse",
    "check_webhook_refusals",
    "check_webhook_verifies",
    "check_write_once",
    "chunks",
    "default_template",
    "described_operations",
    "encode_form",
    "entity_mapping",
    "garbage_server",
    "idempotency_key",
    "invalid_request_strategy",
    "names_field",
    "outbound_records",
    "push_until_done",
    "pushable_entities",
    "signature_header",
    "source_record",
    "write_once_entities",
]
