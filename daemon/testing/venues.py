"""Generated venue configs for scale tests and benchmarks of the daemon.

Each venue has one integration of a bundled provider (Mailchimp by default: an API key by
``env:`` reference and a list per venue), two schedules, and a stable id, so two runs of a
test or benchmark generate the same config.
"""

from __future__ import annotations

import uuid
from pathlib import Path

__all__ = ["generate_venues", "venue_id"]


def venue_id(i: int) -> uuid.UUID:
    """The id of generated venue ``i``."""
    return uuid.UUID(int=i + 1)


def generate_venues(root: Path, venues: int, *, product_cron: str = "0 3 * * *",
                    customer_cron: str | None = None, provider: str = "mailchimp",
                    key_prefix: str = "VENUE_MAILCHIMP_KEY") -> None:
    """Write ``venues`` venue files (and an empty templates directory) under ``root``, each
    with one ``provider`` integration whose API key is the variable ``<key_prefix>_<i>``.

    ``customer_cron`` defaults to a minute of hour 4 that differs between venues."""
    (root / "venues").mkdir(parents=True, exist_ok=True)
    (root / "templates").mkdir(exist_ok=True)
    for i in range(venues):
        customer = customer_cron or f"{i % 60} 4 * * *"
        (root / "venues" / f"venue-{i:05d}.yaml").write_text(f"""\
venue:
  id: {venue_id(i)}
  name: Venue {i}
  timezone: Europe/London
integrations:
  - provider: {provider}
    credentials:
      api_key: env:{key_prefix}_{i}
    schedules:
      product: {{cron: "{product_cron}", lane: HIGH}}
      customer: {{cron: "{customer}"}}
    options:
      list_id: list-{i}
""", encoding="utf-8")
