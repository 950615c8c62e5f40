"""pytest plugin registered by syncd (entry point ``pytest11``): fixtures for plugin authors.

- ``--syncd-provider NAME`` names an installed provider (loaded through the
  ``syncd.plugins`` entry points) for :class:`daemon.testing.kit.ProviderConformance`
  subclasses that do not set ``provider`` themselves, and for the fixtures below.
- ``syncd_provider``: that provider.
- ``syncd_emulator``: an async fixture yielding a started
  :class:`daemon.testing.kit.KitSession` (the provider's emulator on 127.0.0.1 with its
  control API and :meth:`~daemon.testing.kit.KitSession.client`). Needs pytest-asyncio,
  in strict or auto mode.
- ``syncd_emulator_settings``: the :class:`~daemon.provider.EmulatorSettings` it starts
  with; override the fixture to change them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from daemon.provider import EmulatorSettings, Provider

__all__ = ["provider_from_option"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("syncd", "syncd provider conformance kit")
    group.addoption(
        "--syncd-provider", dest="syncd_provider", default=None, metavar="NAME",
        help="installed syncd provider the conformance kit and fixtures test",
    )


def provider_from_option(config: pytest.Config) -> Provider:
    """The provider named by ``--syncd-provider`` (a usage error when unset or unknown)."""
    name = config.getoption("syncd_provider")
    if not name:
        raise pytest.UsageError(
            "no provider to test: set `provider = ...` on the ProviderConformance subclass "
            "or pass --syncd-provider NAME")
    from daemon.plugins import UnknownProvider, load_plugins

    try:
        return load_plugins().provider(str(name))
    except UnknownProvider as exc:
        raise pytest.UsageError(str(exc)) from None


@pytest.fixture
def syncd_provider(request: pytest.FixtureRequest) -> Provider:
    """The provider named by ``--syncd-provider``."""
    return provider_from_option(request.config)


@pytest.fixture
def syncd_emulator_settings() -> EmulatorSettings:
    """Settings the ``syncd_emulator`` fixture starts the emulator with."""
    return EmulatorSettings(seed=1)


def _async_fixture() -> Callable[[Any], Any]:
    """pytest-asyncio's fixture marker when installed (strict mode needs it), else pytest's."""
    try:
        import pytest_asyncio
    except ImportError:  # pragma: no cover - only without pytest-asyncio
        return pytest.fixture
    marker: Callable[[Any], Any] = pytest_asyncio.fixture
    return marker


@_async_fixture()
async def syncd_emulator(syncd_provider: Provider,
                         syncd_emulator_settings: EmulatorSettings) -> AsyncIterator[Any]:
    """A started :class:`~daemon.testing.kit.KitSession` for ``syncd_provider``."""
    from daemon.testing.kit import KitSession

    async with KitSession(syncd_provider, syncd_emulator_settings) as session:
        yield session
