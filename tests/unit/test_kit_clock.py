"""The conformance kit's virtual time: clients and the emulator's documented limits share it,
and waits on it end at once whatever their length."""

from __future__ import annotations

from daemon.plugins import load_plugins
from daemon.provider import EmulatorSettings
from daemon.ratelimit import RateLimiter, Window
from daemon.testing.kit import KitSession, VirtualClock


async def test_a_sleep_moves_the_clock_on_by_what_it_asked_for() -> None:
    clock = VirtualClock(start=50.0)
    await clock.sleep(2.5)
    await clock.sleep(0.0)
    await clock.sleep(-1.0)
    assert clock.now() == 52.5


async def test_the_shortest_sleep_still_moves_the_clock_on() -> None:
    """A token bucket a rounding error short of a token asks for a wait of about 1e-17 s:
    added to the time, that changes nothing, and the waiter would ask again forever."""
    clock = VirtualClock(start=0.4)
    await clock.sleep(2.2e-17)
    assert clock.now() > 0.4


class _Counted(VirtualClock):
    """Fails, rather than spins, when a waiter sleeps far more often than it should."""

    def __init__(self, start: float) -> None:
        super().__init__(start)
        self.sleeps = 0

    async def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        assert self.sleeps < 1000, f"still waiting at {self.now()} after 1000 sleeps"
        await super().sleep(seconds)


async def test_a_client_limiter_on_virtual_time_keeps_its_rate_without_waiting() -> None:
    clock = _Counted(start=0.0)
    limiter = RateLimiter(rate=10.0, burst=1, windows=[Window(30, 60.0)], clock=clock)
    for _ in range(40):
        await limiter.acquire()
    # 30 a minute: the last ten wait, in virtual time, for the first minute to pass.
    assert 60.0 <= clock.now() < 61.0


async def test_the_emulator_counts_its_documented_limits_on_the_sessions_clock() -> None:
    provider = load_plugins().provider("quickbooks")
    clock = VirtualClock()
    async with KitSession(provider, EmulatorSettings(seed=1), clock=clock) as session:
        emulator = session.server.emulator if session.server else None
        assert emulator is not None
        burst = int(emulator.limiter.burst)
        assert [emulator.limiter.take("acct") for _ in range(burst)] == [0.0] * burst
        assert emulator.limiter.take("acct") > 0  # the burst is spent
        await clock.sleep(1.0)  # a second of the session's time refills it
        assert emulator.limiter.take("acct") == 0.0
        # Settings that rebuild the limiter keep it on the session's clock.
        await session.configure(rate_limit_scale=1.0)
        assert emulator.limiter.clock == clock.now
