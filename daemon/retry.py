"""One retry policy: how often a provider call, a batch and a job are tried, and how long a
failing piece of work takes to give up.

Three layers retry a failing sync. The HTTP layer (:class:`~daemon.httpclient.ProviderHTTP`)
retries one provider call; the engine retries a batch whose records came back retryable; the
queue retries a job that ended ``RETRY``. Each layer used to count its own tries, so the
tries multiplied (5 calls x 4 batch tries x 10 jobs). Here the first two layers share one
budget, :attr:`RetryPolicy.call_attempts`: a call that used up its tries in the HTTP layer
is not tried again by the engine, whose batch tries count the HTTP layer's. What is left
after that is the job's retry, up to :attr:`RetryPolicy.job_attempts`.

:meth:`RetryPolicy.give_up_after` answers "how long until we give up?" for a job whose
every try fails.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from daemon.settings import Settings
    from daemon.sync.settings import SyncSettings

__all__ = ["RetryPolicy", "full_jitter", "retry_delay"]


def full_jitter(attempt: int, *, base: float, cap: float,
                rng: random.Random | None = None) -> float:
    """Full-jitter exponential backoff after try ``attempt`` (1 = the first): uniform in
    ``[0, min(cap, base * 2 ** (attempt - 1))]``, so that failing work spreads out."""
    ceiling = min(cap, base * 2.0 ** min(max(attempt - 1, 0), 62))
    return (rng or random).uniform(0.0, ceiling)


def retry_delay(attempt: int, *, base: float, cap: float, retry_after: float | None = None,
                rng: random.Random | None = None) -> float:
    """:func:`full_jitter`, never below a provider's ``retry_after`` (honoured even above
    ``cap``)."""
    delay = full_jitter(attempt, base=base, cap=cap, rng=rng)
    if retry_after is not None and retry_after > delay:
        delay = retry_after
    return delay


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Tries and backoff of each layer, built once from the settings."""

    #: Tries of one provider call or batch within a run (HTTP and batch layers together).
    call_attempts: int = 4
    #: First backoff ceiling between two tries of a call (doubles per try, full jitter).
    call_base_seconds: float = 0.5
    #: Largest wait between two tries of a call; a provider asking for longer (Retry-After)
    #: ends the run and the job is re-queued for then.
    call_cap_seconds: float = 60.0
    #: Tries of one job before it goes to the dead-letter queue.
    job_attempts: int = 10
    #: First backoff ceiling between two tries of a job (doubles per try, full jitter).
    job_base_seconds: float = 5.0
    #: Largest wait between two tries of a job.
    job_cap_seconds: float = 3600.0

    def __post_init__(self) -> None:
        if self.call_attempts < 1 or self.job_attempts < 1:
            raise ValueError("a retry policy needs at least one try per layer")

    @classmethod
    def from_settings(cls, settings: Settings, sync: SyncSettings) -> RetryPolicy:
        return cls(call_attempts=sync.max_attempts,
                   call_cap_seconds=sync.max_backoff_seconds,
                   job_attempts=settings.queue_max_attempts,
                   job_base_seconds=settings.queue_retry_base_seconds,
                   job_cap_seconds=settings.queue_retry_cap_seconds)

    # --- delays ------------------------------------------------------------------------

    def call_ceiling(self, attempt: int) -> float:
        """Longest wait after try ``attempt`` (1 = the first) of a call."""
        return min(self.call_cap_seconds,
                   self.call_base_seconds * 2.0 ** min(max(attempt - 1, 0), 62))

    def call_delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The wait after try ``attempt`` of a call: uniform in ``[0, call_ceiling]``."""
        return full_jitter(attempt, base=self.call_base_seconds, cap=self.call_cap_seconds,
                           rng=rng)

    def job_ceiling(self, attempt: int) -> float:
        """Longest wait after try ``attempt`` of a job (a Retry-After may ask for more)."""
        return min(self.job_cap_seconds,
                   self.job_base_seconds * 2.0 ** min(max(attempt - 1, 0), 62))

    def job_delay(self, attempt: int, retry_after: float | None = None,
                  rng: random.Random | None = None) -> float:
        """The wait after try ``attempt`` of a job, never below the provider's Retry-After."""
        return retry_delay(attempt, base=self.job_base_seconds, cap=self.job_cap_seconds,
                           retry_after=retry_after, rng=rng)

    # --- the answer --------------------------------------------------------------------

    @property
    def calls_per_job_try(self) -> int:
        """Most tries of one call within one try of a job."""
        return self.call_attempts

    @property
    def total_call_attempts(self) -> int:
        """Most tries of one call before the work is given up: call tries x job tries."""
        return self.call_attempts * self.job_attempts

    def give_up_after(self) -> float:
        """Longest time, in seconds of waiting, from a job's first try to its dead letter
        when every try fails at once (time spent in the calls themselves, in the queue
        behind other jobs and in a provider's Retry-After come on top)."""
        within_run = sum(self.call_ceiling(a) for a in range(1, self.call_attempts))
        between_jobs = sum(self.job_ceiling(a) for a in range(1, self.job_attempts))
        return within_run * self.job_attempts + between_jobs

    def describe(self) -> str:
        """One line for logs and docs."""
        return (f"{self.call_attempts} tries per call, {self.job_attempts} tries per job "
                f"({self.total_call_attempts} tries of a call at most); a failing job is "
                f"dead-lettered within {self.give_up_after():,.0f} s of waiting")
