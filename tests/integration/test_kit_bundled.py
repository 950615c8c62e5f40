"""The conformance kit against the four bundled providers, loaded through the same
``syncd.plugins`` entry points a third-party plugin uses."""

from __future__ import annotations

from daemon.plugins import load_plugins
from daemon.provider import Provider
from daemon.testing.kit import ProviderConformance


def _provider(name: str) -> Provider:
    return load_plugins([name]).provider(name)


class TestSquareConformance(ProviderConformance):
    provider = _provider("square")


class TestStripeConformance(ProviderConformance):
    provider = _provider("stripe")


class TestMailchimpConformance(ProviderConformance):
    provider = _provider("mailchimp")


class TestQuickBooksConformance(ProviderConformance):
    provider = _provider("quickbooks")
