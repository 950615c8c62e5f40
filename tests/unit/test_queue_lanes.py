"""Lane shares and retry backoff, without a database."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.queue.backoff import retry_delay
from daemon.queue.lanes import LaneScheduler
from daemon.queue.types import LANES


def _simulate(lanes: LaneScheduler, backlog: dict[str, int], claims: int,
              batch: int) -> Counter[str]:
    """What syncd_claim_jobs does, in Python: smallest virtual times first."""
    got: Counter[str] = Counter()
    left = dict(backlog)
    for _ in range(claims):
        names, passes, weights = lanes.arguments()
        cands = sorted(
            (p + k / w, lane) for lane, p, w in zip(names, passes, weights, strict=True)
            for k in range(1, min(left.get(lane, 0), batch) + 1)
        )[:batch]
        taken = Counter(lane for _, lane in cands)
        for lane, n in taken.items():
            left[lane] -= n
        got.update(taken)
        lanes.record(taken)
    return got


@given(weights=st.tuples(*[st.integers(1, 20)] * 4), batch=st.integers(1, 20))
def test_saturated_lanes_get_their_weighted_share(
    weights: tuple[int, int, int, int], batch: int
) -> None:
    total = sum(weights) * 20
    got = _simulate(LaneScheduler(weights), dict.fromkeys(LANES, 10**6), total // batch + 1,
                    batch)
    served = sum(got.values())
    for lane, w in zip(LANES, weights, strict=True):
        assert abs(got[lane] - served * w / sum(weights)) <= batch + 1
        assert got[lane] > 0


def test_idle_lane_share_goes_to_the_others() -> None:
    got = _simulate(LaneScheduler((8, 4, 2, 1)), {"HIGH": 10**6, "LOW": 10**6}, 100, 10)
    assert sum(got.values()) == 1000
    assert abs(got["HIGH"] - 800) <= 11


def test_weights_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive weight"):
        LaneScheduler((8, 4, 0, 1))


@given(attempt=st.integers(1, 200), seed=st.integers(0, 2**32))
def test_backoff_is_full_jitter_below_a_capped_ceiling(attempt: int, seed: int) -> None:
    delay = retry_delay(attempt, base=5, cap=3600, rng=random.Random(seed))
    assert 0 <= delay <= min(3600, 5 * 2 ** (attempt - 1))


def test_backoff_honours_retry_after_even_above_the_cap() -> None:
    assert retry_delay(1, base=5, cap=60, retry_after=7200) == 7200
    assert retry_delay(3, base=5, cap=60, retry_after=0.5, rng=random.Random(1)) >= 0.5


def test_backoff_spreads_out() -> None:
    rng = random.Random(7)
    delays = {round(retry_delay(6, base=5, cap=3600, rng=rng), 3) for _ in range(50)}
    assert len(delays) > 40
