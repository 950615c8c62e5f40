"""Square client helpers: idempotency keys that fit each endpoint."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from plugins.square.client import fit_key


@given(st.text(min_size=1, max_size=400), st.sampled_from([45, 128, 192]), st.text(max_size=20))
def test_keys_fit_and_are_deterministic(key: str, limit: int, salt: str) -> None:
    fitted = fit_key(key, limit, salt)
    assert 1 <= len(fitted) <= limit
    assert fitted == fit_key(key, limit, salt)


def test_short_keys_are_kept_and_salt_separates_steps() -> None:
    key = "a14e9390-2826-55c7-baee-86c9b1131fed"
    assert fit_key(key, 45) == key
    assert fit_key(key, 45, "payment") != fit_key(key, 45, "other")
    assert fit_key("k" * 200, 128) != fit_key("k" * 199, 128)
