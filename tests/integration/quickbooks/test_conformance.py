"""The conformance kit against the QuickBooks emulator."""

from __future__ import annotations

from daemon.testing.kit import ProviderConformance
from plugins.quickbooks import QuickBooksProvider


class TestQuickBooksConformance(ProviderConformance):
    provider = QuickBooksProvider()
    signature_header = "intuit-signature"
    webhook_timestamped = False
