"""The Mailchimp provider plugin for syncd."""

from __future__ import annotations

from collections.abc import Sequence

from daemon import hookimpl
from daemon.provider import Provider
from plugins.mailchimp.provider import MailchimpProvider

__all__ = ["MailchimpProvider", "syncd_register_providers"]


@hookimpl
def syncd_register_providers() -> Sequence[Provider]:
    """Register the Mailchimp provider."""
    return [MailchimpProvider()]
