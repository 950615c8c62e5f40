"""Bounded decoding of webhook bodies: what a provider plugin's ``parse_webhook`` reads.

A verified delivery is authentic, not well formed. ``json.loads`` recurses once per level
of nesting, so a body of a few kilobytes of ``[`` raises :class:`RecursionError` (and a
payload just under the interpreter's limit breaks whatever walks it next). These helpers
refuse such bodies up front, with a reason that is safe to log, before anything recurses.

Real deliveries are shallow: a Stripe invoice event, the deepest of the bundled providers',
nests about a dozen levels. :data:`MAX_DEPTH` leaves ample room above that.
"""

from __future__ import annotations

import json
import re
from typing import Any

from daemon.errors import SyncdError

__all__ = ["MAX_DEPTH", "PayloadRejected", "load_json", "nests_deeper_than"]

#: The deepest nesting of arrays and objects (or form-field brackets) a body may have.
MAX_DEPTH = 64

# A JSON string (escapes included) or one bracket. Strings are skipped whole, so brackets
# inside them do not count.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)


class PayloadRejected(SyncdError, ValueError):
    """A body refused before parsing; the message says why and is safe to log."""


def nests_deeper_than(text: str, limit: int = MAX_DEPTH) -> bool:
    """Whether the JSON ``text`` nests arrays and objects more than ``limit`` levels deep.

    It reads the text the way a JSON parser does (strings skipped, escapes honoured) but
    without recursing, and stops at the first level past the limit: safe on any input.
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for match in _TOKEN.finditer(text):
        char = match.group()
        if char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


def load_json(body: bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """``body`` (UTF-8 JSON) decoded, or :class:`PayloadRejected` when it is not UTF-8, not
    JSON, or nested deeper than ``max_depth``. Never raises anything else."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadRejected("the body is not UTF-8") from None
    if nests_deeper_than(text, max_depth):
        raise PayloadRejected(f"the body nests deeper than {max_depth} levels")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise PayloadRejected(f"the body is not JSON ({exc.__class__.__name__})") from None
