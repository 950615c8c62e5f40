"""Two-way sync: provider changes processed into the platform, with consent, conflict
policy and echo rules (see docs/sync.md, "Inbound changes")."""

from daemon.inbound.fields import (
    CONSENT_FIELDS,
    DEFAULT_WRITABLE,
    PLATFORM_FIELDS,
    InboundSettings,
    PlatformField,
)
from daemon.inbound.processor import Decision, InboundProcessor
from daemon.inbound.rules import INBOUND_KEY, InboundRule, parse_inbound, validate_inbound
from daemon.inbound.sink import HookSink, PlatformRecords, Sink, TableSink

__all__ = [
    "CONSENT_FIELDS",
    "DEFAULT_WRITABLE",
    "INBOUND_KEY",
    "PLATFORM_FIELDS",
    "Decision",
    "HookSink",
    "InboundProcessor",
    "InboundRule",
    "InboundSettings",
    "PlatformField",
    "PlatformRecords",
    "Sink",
    "TableSink",
    "parse_inbound",
    "validate_inbound",
]
