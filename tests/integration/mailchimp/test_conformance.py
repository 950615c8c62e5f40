"""The conformance kit against the Mailchimp emulator."""

from __future__ import annotations

from daemon.testing.kit import ProviderConformance
from plugins.mailchimp import MailchimpProvider


class TestMailchimpConformance(ProviderConformance):
    provider = MailchimpProvider()
    signature_header = "X-Mailchimp-Signature"
