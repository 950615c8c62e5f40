"""Fixtures shared by every test tier.

The environment is cleaned of ``SYNCD_*`` and ``DATABASE_URL`` before any test runs, so a
developer's shell never leaks into a test. Database tests get their own database, cloned
from a template built once per session from the migrations.

Where ``PYTHONDONTWRITEBYTECODE`` is set (to keep ``__pycache__`` out of the source tree),
the suite keeps compiled modules in a folder of its own outside the tree instead
(:func:`_bytecode_outside_the_tree`): otherwise every xdist worker and every ``syncd``
subprocess compiles syncd, its dependencies and the rewritten test modules from source.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import structlog

from daemon.db import init_connection
from daemon.testing.openapi import RESPONSE_AUDIT, specs_dir
from daemon.testing.postgres import TestDatabases, embedded_data_dir

# SYNCD_EMULATOR_SPECS says where the providers' API descriptions are (CI may put them
# anywhere); it changes what the emulators check, not what a test expects.
_KEEP = {"SYNCD_TEST_DATABASE_URL", "SYNCD_TEST_EMBEDDED", "SYNCD_EMULATOR_SPECS"}
for _name in list(os.environ):
    if (_name.startswith("SYNCD_") and _name not in _KEEP) or _name == "DATABASE_URL":
        del os.environ[_name]

ROOT = Path(__file__).resolve().parent.parent


def _bytecode_outside_the_tree() -> None:
    """Cache bytecode in ``$TMPDIR/syncd-pycache-UID`` when the environment forbids
    ``__pycache__`` folders and names no ``PYTHONPYCACHEPREFIX`` of its own.

    Set in this process (pytest's assertion rewriting caches there too) and in the
    environment that xdist workers and subprocesses inherit. Compiling from source cost
    each worker 6 of its 10 s of collection and each ``syncd`` run about 0.1 s. The folder
    must be this user's own and closed to others, as Python runs what it finds there.
    """
    if not os.environ.get("PYTHONDONTWRITEBYTECODE") or os.environ.get("PYTHONPYCACHEPREFIX"):
        return
    prefix = Path(tempfile.gettempdir()) / f"syncd-pycache-{os.getuid()}"
    try:
        prefix.mkdir(mode=0o700, exist_ok=True)
        info = prefix.lstat()
    except OSError:
        return
    if (not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid()
            or info.st_mode & 0o077):
        return
    del os.environ["PYTHONDONTWRITEBYTECODE"]
    os.environ["PYTHONPYCACHEPREFIX"] = str(prefix)
    sys.dont_write_bytecode = False
    sys.pycache_prefix = str(prefix)


_bytecode_outside_the_tree()


RESPONSE_AUDIT.enabled = True  # every emulator response in the suite is checked


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist: a worker's audit problems come back to the controlling process."""
    RESPONSE_AUDIT.problems.extend(node.workeroutput.get("response_audit", []))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when an emulator answered something its provider's description says
    the provider never answers (the response audit of daemon.testing.openapi). An xdist
    worker hands its problems to the controller, which fails the run."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["response_audit"] = list(RESPONSE_AUDIT.problems)
        return
    if RESPONSE_AUDIT.problems:
        shown = "\n".join(f"  {p}" for p in sorted(set(RESPONSE_AUDIT.problems))[:50])
        session.config.get_terminal_writer().line(
            f"emulator responses that do not fit the providers' descriptions:\n{shown}",
            red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_sessionstart(session: pytest.Session) -> None:
    """In CI the providers' API descriptions must be there: without them the emulators
    check nothing and every test against them would pass for the wrong reason."""
    if os.environ.get("CI") == "true" and specs_dir() is None:
        raise pytest.UsageError(
            "CI=true but the providers' API descriptions were not found: set "
            "SYNCD_EMULATOR_SPECS or place shared/specs beside the checkout")


def pytest_configure(config: pytest.Config) -> None:
    # A parallel run's id, chosen here so that this (controlling) process knows it too and
    # can remove the embedded Postgres directory its workers shared.
    option = config.option
    if (not hasattr(config, "workerinput") and getattr(option, "numprocesses", None)
            and getattr(option, "testrunuid", "unset") is None):
        option.testrunuid = uuid.uuid4().hex


def pytest_unconfigure(config: pytest.Config) -> None:
    run_id = getattr(config.option, "testrunuid", None)
    if not hasattr(config, "workerinput") and run_id:
        shutil.rmtree(embedded_data_dir(run_id), ignore_errors=True)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """A test that runs ``daemon.cli.main`` in-process configures the process's logging (a
    level, a captured stream that closes with the test); the next test gets the
    configuration as it was, so its ``capture_logs`` sees every event."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture(scope="session")
def test_databases() -> Iterator[TestDatabases]:
    """The Postgres server all database tests use (see daemon.testing.postgres), and the
    thread that makes and drops their databases while tests run."""
    run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    databases = TestDatabases(embedded_data_dir(run_id) if run_id else None)
    yield databases
    databases.close()


@pytest.fixture
def db_url(test_databases: TestDatabases) -> Iterator[str]:
    """URL of a fresh, migrated database of this test's own."""
    url = test_databases.take()
    yield url
    test_databases.give_back(url)


@pytest.fixture
def empty_db_url(test_databases: TestDatabases) -> Iterator[str]:
    """URL of a fresh database with no schema at all."""
    url = test_databases.take(migrated=False)
    yield url
    test_databases.give_back(url)


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A connection pool on this test's database."""
    p = await asyncpg.create_pool(db_url, min_size=1, max_size=5, init=init_connection)
    assert p is not None
    yield p
    await p.close()


@pytest.fixture
async def conn(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """One connection on this test's database."""
    async with pool.acquire() as c:
        yield c
