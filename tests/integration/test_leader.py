"""Leadership on a connection of its own: one leader, its duties end the moment its
connection is lost, and another replica takes over."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg

from daemon.leader import Leadership


class Replica:
    def __init__(self, db_url: str, name: str) -> None:
        self.started = 0
        self.cancelled = 0
        self.changes: list[bool] = []
        self.leadership = Leadership(db_url, self.duties, retry_seconds=0.1,
                                     check_seconds=0.1, name=name)
        self.leadership.on_change(self.changes.append)
        self.task: asyncio.Task[None] | None = None

    async def duties(self) -> None:
        self.started += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    def start(self) -> None:
        self.task = asyncio.create_task(self.leadership.run())

    async def stop(self) -> None:
        self.leadership.stop()
        if self.task is not None:
            await asyncio.wait_for(self.task, 10)


async def _until(check: object, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not check():  # type: ignore[operator]
            await asyncio.sleep(0.02)


async def test_one_leads_and_another_takes_over_when_its_connection_drops(
        db_url: str) -> None:
    a, b = Replica(db_url, "a"), Replica(db_url, "b")
    a.start()
    await _until(lambda: a.leadership.is_leader)
    b.start()
    await asyncio.sleep(0.5)  # b tries several times meanwhile
    assert (a.started, b.started, b.leadership.is_leader) == (1, 0, False)
    admin = await asyncpg.connect(db_url)
    try:
        # Postgres ends the leader's session (a restart, a cut network, an operator).
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks "
            "WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid() "
            # Only this test's database: other tests on the server hold advisory locks too
            # (a demo's, a migration's), and ending their sessions failed them.
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")
        await _until(lambda: a.cancelled == 1)
        assert a.changes[:2] == [True, False]
        await _until(lambda: b.leadership.is_leader)
        assert b.started == 1
    finally:
        await admin.close()
        for replica in (a, b):
            with contextlib.suppress(Exception):
                await replica.stop()
    assert b.cancelled == 1  # stopping ends the duties too
    assert not a.leadership.is_leader


async def test_stopping_resigns_so_the_next_replica_leads_at_once(db_url: str) -> None:
    a, b = Replica(db_url, "a"), Replica(db_url, "b")
    a.start()
    await _until(lambda: a.leadership.is_leader)
    b.start()
    await a.stop()
    assert a.cancelled == 1
    await _until(lambda: b.leadership.is_leader, timeout=5)
    await b.stop()
