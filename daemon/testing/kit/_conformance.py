"""``ProviderConformance``: the kit's checks as a pytest test class to subclass."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar, TypeVar

import pytest

from daemon.provider import EmulatorSettings, Entity, Provider
from daemon.testing.kit import _checks
from daemon.testing.kit._described import (
    Refusal,
    check_refused,
    described_operations,
    invalid_request_strategy,
    names_field,
)
from daemon.testing.kit._session import KitSession
from daemon.testing.openapi import Description

__all__ = ["ProviderConformance"]

T = TypeVar("T")


class ProviderConformance:
    """Subclass as ``Test...`` in a test module to run every check against a provider::

        from daemon.testing.kit import ProviderConformance
        from syncd_acme import AcmeProvider

        class TestAcmeConformance(ProviderConformance):
            provider = AcmeProvider()

    With ``provider`` left unset, the provider named by ``--syncd-provider NAME`` is used
    (loaded through the ``syncd.plugins`` entry points). Checks that push run once per
    entity the provider can push (the write-once check once per write-once entity, the
    malformed-answer check once per entity and kind of garbage); each check is its own test.
    """

    #: The provider under test (or None to use ``--syncd-provider``).
    provider: ClassVar[Provider | None] = None
    #: Options for the provider's clients; by default the options model's defaults, else
    #: the model filled from the emulator's account facts.
    options: ClassVar[Mapping[str, Any] | None] = None
    #: The header carrying the webhook signature; by default the one named ``*signature*``.
    signature_header: ClassVar[str | None] = None
    #: Whether signatures are timestamped (stale ones must be refused); by default
    #: detected from a ``t=<digits>`` element in the signature header.
    webhook_timestamped: ClassVar[bool | None] = None
    #: The entity whose webhooks are checked; by default customer, else the first pushable.
    webhook_entity: ClassVar[Entity | None] = None
    #: Seconds one check may take (client backoff included).
    check_timeout: ClassVar[float] = 180.0
    #: The longest the kit itself waits between retries of a failed push.
    max_retry_wait: ClassVar[float] = 2.0
    #: The provider's published API description the emulator must hold requests to; by
    #: default the emulator's own ``description`` attribute, when it has one.
    description: ClassVar[Description | None] = None
    #: Whether an answer refuses an invalid request in the provider's shape; by default the
    #: emulator's own ``refuses(status, body, invalid)`` when it has one, else a 400 naming
    #: the offending field.
    refusal: ClassVar[Refusal | None] = None
    #: How many generated invalid requests the description check sends.
    invalid_examples: ClassVar[int] = 100

    # --- plumbing ------------------------------------------------------------------------

    @classmethod
    def _resolve(cls, config: pytest.Config) -> Provider:
        if cls.provider is not None:
            return cls.provider
        from daemon.testing.pytest_plugin import provider_from_option

        return provider_from_option(config)

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "kit_entity" in metafunc.fixturenames:
            provider = self._resolve(metafunc.config)
            entities = _checks.pushable_entities(provider)
            metafunc.parametrize("kit_entity", entities, ids=[e.value for e in entities])
        if "kit_garbage" in metafunc.fixturenames:
            metafunc.parametrize("kit_garbage", _checks.GARBAGE_ANSWERS,
                                 ids=[g.name for g in _checks.GARBAGE_ANSWERS])
        if "kit_write_once_entity" in metafunc.fixturenames:
            provider = self._resolve(metafunc.config)
            once = _checks.write_once_entities(provider)
            metafunc.parametrize("kit_write_once_entity", once, ids=[e.value for e in once])

    @pytest.fixture
    def kit_provider(self, request: pytest.FixtureRequest) -> Provider:
        """The provider under test."""
        return self._resolve(request.config)

    @pytest.fixture
    def kit_webhook_entity(self, kit_provider: Provider) -> Entity:
        if not kit_provider.capabilities.webhooks:
            pytest.skip(f"{kit_provider.name} declares no webhooks")
        if self.webhook_entity is not None:
            return self.webhook_entity
        pushable = _checks.pushable_entities(kit_provider)
        if not pushable:
            pytest.skip(f"{kit_provider.name} pushes no entity to send webhooks for")
        return Entity.CUSTOMER if Entity.CUSTOMER in pushable else pushable[0]

    def _session(self, provider: Provider) -> KitSession:
        return KitSession(provider, EmulatorSettings(seed=1), options=self.options)

    def _run(self, provider: Provider,
             check: Callable[[KitSession], Awaitable[T]]) -> T:
        async def body() -> T:
            async with self._session(provider) as session:
                return await asyncio.wait_for(check(session), self.check_timeout)

        return asyncio.run(body())

    # --- static checks -------------------------------------------------------------------

    def test_capabilities(self, kit_provider: Provider) -> None:
        _checks.check_capabilities(kit_provider)

    def test_default_templates_validate(self, kit_provider: Provider) -> None:
        _checks.check_default_templates(kit_provider)

    # --- pushing -------------------------------------------------------------------------

    def test_batching_at_declared_size(self, kit_provider: Provider, kit_entity: Entity) -> None:
        self._run(kit_provider, lambda s: _checks.check_batching(s, kit_entity))

    def test_idempotent_retry(self, kit_provider: Provider, kit_entity: Entity) -> None:
        self._run(kit_provider, lambda s: _checks.check_idempotent_retry(s, kit_entity))

    def test_no_duplicate_after_crash(self, kit_provider: Provider, kit_entity: Entity) -> None:
        self._run(kit_provider, lambda s: _checks.check_crash_recovery(s, kit_entity))

    def test_rate_limit_429(self, kit_provider: Provider, kit_entity: Entity) -> None:
        self._run(kit_provider, lambda s: _checks.check_rate_limit_429(
            s, kit_entity, max_wait=self.max_retry_wait))

    def test_auth_failure_is_classified(self, kit_provider: Provider,
                                        kit_entity: Entity) -> None:
        self._run(kit_provider, lambda s: _checks.check_auth_failure(s, kit_entity))

    def test_malformed_answers_are_classified(self, kit_provider: Provider, kit_entity: Entity,
                                              kit_garbage: _checks.Garbage) -> None:
        self._run(kit_provider, lambda s: _checks.check_malformed_answers(
            s, kit_entity, kit_garbage))

    def test_write_once_refuses_updates(self, kit_provider: Provider,
                                        kit_write_once_entity: Entity) -> None:
        self._run(kit_provider, lambda s: _checks.check_write_once(s, kit_write_once_entity))

    # --- webhooks ------------------------------------------------------------------------

    def test_webhook_round_trip(self, kit_provider: Provider,
                                kit_webhook_entity: Entity) -> None:
        self._run(kit_provider, lambda s: _checks.check_webhook_verifies(s, kit_webhook_entity))

    def test_webhook_forgeries_refused(self, kit_provider: Provider,
                                      kit_webhook_entity: Entity) -> None:
        self._run(kit_provider, lambda s: _checks.check_webhook_refusals(
            s, kit_webhook_entity, header=self.signature_header,
            timestamped=self.webhook_timestamped))

    def test_webhook_garbage_never_raises(self, kit_provider: Provider) -> None:
        if not kit_provider.capabilities.webhooks:
            pytest.skip(f"{kit_provider.name} declares no webhooks")
        _checks.check_webhook_garbage(kit_provider, self.signature_header)

    def test_webhook_deep_bodies_never_raise(self, kit_provider: Provider,
                                             kit_webhook_entity: Entity) -> None:
        self._run(kit_provider, lambda s: _checks.check_webhook_deep_bodies(
            s, kit_webhook_entity))

    def test_parse_webhook(self, kit_provider: Provider, kit_webhook_entity: Entity) -> None:
        self._run(kit_provider, lambda s: _checks.check_webhook_parse(s, kit_webhook_entity))

    # --- the emulator against the provider's description ---------------------------------

    def test_emulator_refuses_invalid_requests(self, kit_provider: Provider) -> None:
        """Requests made from the description, each breaking it once, are refused."""
        from hypothesis import HealthCheck, given, settings

        async def start(session: KitSession
                        ) -> tuple[Description, list[Any], str, Refusal, dict[str, str]]:
            emulator = session.server.emulator if session.server else None
            description = self.description or getattr(emulator, "description", None)
            if emulator is None or not isinstance(description, Description):
                pytest.skip(f"{kit_provider.name}: no API description to check against")
            token = next(str(v) for k, v in emulator.default_credentials().items()
                         if k != "account")
            refused = type(self).refusal or getattr(emulator, "refuses", None) or names_field
            values = {str(k): str(v) for k, v in
                      (getattr(emulator, "path_values", None) or {}).items()}
            return (description, described_operations(emulator, description), token,
                    refused, values)

        async def body(session: KitSession) -> None:
            description, operations, token, refused, values = await start(session)
            await session.configure(enforce_rate_limits=False)  # many requests, at once
            if not operations:
                pytest.skip(f"{kit_provider.name}: the emulator serves no described path")
            import httpx

            loop = asyncio.get_running_loop()
            async with httpx.AsyncClient(base_url=session.url, timeout=10.0, headers={
                    "Authorization": f"Bearer {token}"}) as http:
                strategy = invalid_request_strategy(operations, form=description.form,
                                                    path_values=values)
                found: list[Any] = []

                @settings(max_examples=self.invalid_examples, deadline=None,
                          derandomize=True, database=None,
                          suppress_health_check=list(HealthCheck))
                @given(strategy)
                def draw(invalid: Any) -> None:
                    found.append(invalid)

                await loop.run_in_executor(None, draw)
                for invalid in found:
                    await check_refused(http, invalid, form=description.form,
                                        refused=refused)

        self._run(kit_provider, body)
