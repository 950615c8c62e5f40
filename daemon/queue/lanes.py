"""Weighted lane selection kept between claims (stride scheduling).

Each lane has a *pass*: its virtual time. A claim gives the k-th due job of a lane the
virtual time ``pass + k / weight`` and takes the smallest (in Postgres, see
``syncd_claim_jobs``); afterwards each lane's pass advances by ``claimed / weight``. Over many
claims every lane with work gets its weight's share, whatever the batch size.

A lane the claim took nothing from is brought up to just behind the served lanes
(``floor - 1 / weight``, where ``floor`` is the lowest pass among them). A lane that had
work but lost out is already there (its next job's virtual time exceeded every job taken),
so this changes nothing for it; a lane that was idle joins at the current virtual time
instead of bursting to catch up on the time it had no work.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from daemon.queue.types import LANES

__all__ = ["LaneScheduler"]


@dataclass
class LaneScheduler:
    """Per-process lane state: weights and passes, in :data:`LANES` order."""

    weights: Sequence[float] = (8.0, 4.0, 2.0, 1.0)
    passes: list[float] = field(default_factory=lambda: [0.0] * len(LANES))

    def __post_init__(self) -> None:
        if len(self.weights) != len(LANES) or any(w <= 0 for w in self.weights):
            raise ValueError("one positive weight per lane is required")
        self.weights = [float(w) for w in self.weights]

    def arguments(self) -> tuple[list[str], list[float], list[float]]:
        """Lanes, passes and weights as the claim function takes them."""
        return list(LANES), list(self.passes), list(self.weights)

    def record(self, claimed: Mapping[str, int]) -> None:
        """Advance the passes after a claim that took ``claimed[lane]`` jobs per lane."""
        served = [i for i, lane in enumerate(LANES) if claimed.get(lane, 0) > 0]
        if not served:
            return
        for i in served:
            self.passes[i] += claimed[LANES[i]] / self.weights[i]
        floor = min(self.passes[i] for i in served)
        for i in range(len(LANES)):
            if i not in served:
                self.passes[i] = max(self.passes[i], floor - 1.0 / self.weights[i])
        # Keep the numbers small: only differences matter.
        low = min(self.passes)
        if low > 1e6:
            self.passes = [p - low for p in self.passes]
