"""The kit's pytest plugin as an author meets it: ``--syncd-provider`` and the fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

MODULE = '''
import pytest

from daemon.provider import Entity
from daemon.testing.kit import ProviderConformance, outbound_records


class TestByOption(ProviderConformance):
    pass


def test_provider_fixture(syncd_provider):
    assert syncd_provider.name == "square"


@pytest.mark.asyncio
async def test_emulator_fixture(syncd_emulator, syncd_provider):
    client = await syncd_emulator.client()
    records = outbound_records(syncd_provider, Entity.CUSTOMER, 2)
    results = await client.push(Entity.CUSTOMER, records)
    assert all(r.ok for r in results)
    assert await syncd_emulator.count("customer") == 2
'''


def _pytest(where: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SYNCD_") and k not in ("DATABASE_URL", "PYTEST_ADDOPTS")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-o", "asyncio_default_fixture_loop_scope=function", *args],
        cwd=where, capture_output=True, text=True, check=False, timeout=600, env=env,
    )


def test_option_names_the_provider_for_the_kit_and_fixtures(tmp_path: Path) -> None:
    # pytest-asyncio in its default strict mode, as most plugin authors have it.
    (tmp_path / "test_square_kit.py").write_text(MODULE)
    result = _pytest(tmp_path, "--syncd-provider", "square", "-k",
                     "capabilities or templates or fixture or garbage")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "5 passed" in result.stdout


def test_without_a_provider_the_author_is_told_how_to_name_one(tmp_path: Path) -> None:
    (tmp_path / "test_square_kit.py").write_text(MODULE)
    result = _pytest(tmp_path, "-k", "capabilities")
    assert result.returncode != 0
    assert "pass --syncd-provider NAME" in result.stdout + result.stderr


def test_an_unknown_provider_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "test_square_kit.py").write_text(MODULE)
    result = _pytest(tmp_path, "--syncd-provider", "nosuch", "-k", "capabilities")
    assert result.returncode != 0
    assert "unknown provider 'nosuch'" in result.stdout + result.stderr
