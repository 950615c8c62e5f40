from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from daemon import hookimpl, hookspecs
from daemon.plugins import UnknownProvider, await_me_maybe, load_plugins
from daemon.provider import Provider

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = {"square", "stripe", "mailchimp", "quickbooks"}


def hook_names() -> list[str]:
    return [n for n, f in inspect.getmembers(hookspecs, inspect.isfunction)
            if n.startswith("syncd_")]


def test_bundled_plugins_load_through_entry_points() -> None:
    plugins = load_plugins()
    assert {i.name for i in plugins.loaded} >= BUNDLED
    assert set(plugins.providers) >= BUNDLED
    for name in BUNDLED:
        assert isinstance(plugins.provider(name), Provider)
        info = next(i for i in plugins.loaded if i.name == name)
        assert info.distribution == "syncd"
        assert "syncd_register_providers" in info.hooks


def test_allow_list_limits_what_loads() -> None:
    plugins = load_plugins(["stripe", "nonexistent"])
    assert [i.name for i in plugins.loaded] == ["stripe"]
    assert set(plugins.providers) == {"stripe"}
    assert any(f.name == "nonexistent" and "not installed" in f.error for f in plugins.failed)


def test_unknown_provider_names_the_loaded_ones() -> None:
    plugins = load_plugins(["stripe", "square"])
    with pytest.raises(UnknownProvider) as info:
        plugins.provider("shopify")
    assert str(info.value) == "unknown provider 'shopify' (loaded providers: square, stripe)"


class _Misspelt:
    @hookimpl
    def syncd_register_provider(self) -> list[Any]:  # singular: not a syncd hook
        return []


class _Raises:
    @hookimpl
    def syncd_register_providers(self) -> list[Any]:
        raise RuntimeError("boom while registering")


class _NotAProvider:
    @hookimpl
    def syncd_register_providers(self) -> list[Any]:
        return [object()]


def test_broken_plugins_are_reported_and_skipped_others_keep_working() -> None:
    plugins = load_plugins(
        ["stripe"],
        extra=[("misspelt", _Misspelt()), ("raises", _Raises()), ("bogus", _NotAProvider())],
    )
    failed = {f.name: f.error for f in plugins.failed}
    assert "unknown hook" in failed["misspelt"]
    assert "boom while registering" in failed["raises"]
    assert "does not implement the Provider protocol" in failed["bogus"]
    assert set(plugins.providers) == {"stripe"}
    assert {i.name for i in plugins.loaded} == {"stripe"}


def test_duplicate_provider_name_is_refused() -> None:
    stripe = load_plugins(["stripe"]).provider("stripe")

    class Dup:
        @hookimpl
        def syncd_register_providers(self) -> Sequence[Any]:
            return [stripe]

    plugins = load_plugins(["stripe"], extra=[("dup", Dup())])
    assert any(f.name == "dup" and "already registered" in f.error for f in plugins.failed)


# --- one test per hook (the meta-test below keeps this true) --------------------------------


def test_hook_syncd_register_providers() -> None:
    plugins = load_plugins(["square"])
    results = plugins.hook.syncd_register_providers()
    assert [p.name for group in results for p in group] == ["square"]


def test_hook_syncd_provider_options_model() -> None:
    class Options(BaseModel):
        x: int = 1

    class Override:
        @hookimpl
        def syncd_provider_options_model(self, provider: str) -> type[BaseModel] | None:
            return Options if provider == "stripe" else None

    plugins = load_plugins(["stripe", "square"], extra=[("override", Override())])
    assert plugins.options_model("stripe") is Options
    default = plugins.options_model("square")
    assert default is plugins.provider("square").options_model()
    assert plugins.options_model("nope") is None


def test_hook_syncd_register_commands() -> None:
    class Cmd:
        @hookimpl
        def syncd_register_commands(self, subparsers: Any) -> None:
            subparsers.add_parser("hello").set_defaults(func=lambda a, c: 0)

    from daemon.cli import build_parser

    plugins = load_plugins([], extra=[("cmd", Cmd())])
    parser = build_parser(plugins.hook)
    args = parser.parse_args(["hello"])
    assert args.func(args, None) == 0


def test_hook_syncd_key_provider(tmp_path: Path) -> None:
    import asyncio

    from daemon.settings import Settings
    from daemon.vault import Binding, KeyProvider, LocalKeyProvider
    from daemon.vault.keys import format_key, generate_key
    from daemon.vault.provider import load_vault

    wrapped: list[int] = []

    class Kms(KeyProvider):
        """Stands in for a KMS: wraps with a local key, counting calls."""

        name = "kms"
        inner = LocalKeyProvider({7: generate_key()})
        versions = (7,)
        current_version = 7

        async def wrap(self, version: int, data_key: bytes, context: bytes) -> bytes:
            wrapped.append(version)
            return await self.inner.wrap(version, data_key, context)

        async def unwrap(self, version: int, blob: bytes, context: bytes) -> bytes:
            return await self.inner.unwrap(version, blob, context)

    class KmsPlugin:
        @hookimpl
        def syncd_key_provider(self, settings: Settings) -> KeyProvider | None:
            return Kms()

    settings = Settings(_env_file=None, database_url="postgresql://h/d",
                        encryption_keys=format_key(1, generate_key()))
    local = load_vault(load_plugins([]), settings)
    assert local.keys.name == "local"
    assert local.keys.current_version == 1
    vault = load_vault(load_plugins([], extra=[("kms", KmsPlugin())]), settings)
    binding = Binding("v", "square", "oauth_tokens.access_token")
    sealed = asyncio.run(vault.seal("tok", binding))
    assert (sealed.version, wrapped) == (7, [7])
    assert asyncio.run(vault.open(sealed.blob, 7, binding)) == "tok"


async def test_hook_syncd_integration_failed() -> None:
    from structlog.testing import capture_logs

    from daemon.oauth.lifecycle import integration_failed

    told: list[tuple[str, str, str]] = []

    class Pager:
        @hookimpl
        async def syncd_integration_failed(self, venue_id: str, provider: str,
                                           reason: str) -> None:
            told.append((venue_id, provider, reason))

    class Broken:
        @hookimpl
        def syncd_integration_failed(self, venue_id: str, provider: str, reason: str) -> None:
            raise RuntimeError("mail server down")

    plugins = load_plugins([], extra=[("pager", Pager()), ("broken", Broken())])
    with capture_logs() as logs:
        await integration_failed(plugins, "v1", "quickbooks", "refresh refused: invalid_grant")
    assert told == [("v1", "quickbooks", "refresh refused: invalid_grant")]
    events = {e["event"]: e for e in logs}
    assert events["integration.failed"]["reason"] == "refresh refused: invalid_grant"
    assert events["integration.failed_hook_error"]["plugin"] == "broken"


async def test_hook_syncd_inbound_change() -> None:
    from daemon.inbound.sink import HookSink
    from daemon.provider import DeliveryStatus, InboundDelivery, InboundWrite

    delivered: list[InboundWrite] = []

    class PlatformApi:
        """Delivers customers through the platform's API; leaves other entities alone."""

        @hookimpl
        async def syncd_inbound_change(self, write: InboundWrite) -> InboundDelivery | None:
            if write.entity_type != "customer":
                return None
            delivered.append(write)
            return InboundDelivery(DeliveryStatus.APPLIED, "sent to the platform API")

    class Tables:
        def __init__(self) -> None:
            self.got: list[InboundWrite] = []

        async def deliver(self, write: InboundWrite, conn: Any = None) -> InboundDelivery:
            self.got.append(write)
            return InboundDelivery(DeliveryStatus.MOVED)

    fallback = Tables()
    sink = HookSink(load_plugins([], extra=[("api", PlatformApi())]).hook, fallback)
    customer = InboundWrite(venue_id="v1", entity_type="customer", local_id="c1",
                            values={"customer.first_name": "Ada"}, changed_at=None,
                            provider="quickbooks")
    sale = InboundWrite(venue_id="v1", entity_type="inventory", local_id="e1",
                        values={"inventory.sold": 3}, changed_at=None, provider="square")
    assert (await sink.deliver(customer)).status is DeliveryStatus.APPLIED
    assert (await sink.deliver(sale)).status is DeliveryStatus.MOVED
    assert delivered == [customer]
    assert fallback.got == [sale]


async def test_await_me_maybe() -> None:
    async def coro() -> int:
        return 2

    assert await await_me_maybe(1) == 1
    assert await await_me_maybe(coro()) == 2


def test_plugin_hooks_have_tests() -> None:
    source = Path(__file__).read_text()
    tested = set(re.findall(r"def test_hook_(\w+)\(", source))
    assert set(hook_names()) <= tested, set(hook_names()) - tested


def test_plugin_hooks_are_documented() -> None:
    docs = (ROOT / "docs" / "writing-plugins.md").read_text()
    tree = ast.parse((ROOT / "daemon" / "hookspecs.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("syncd_"):
            doc = ast.get_docstring(node) or ""
            assert ":returns:" in doc, node.name
            assert node.returns is not None, node.name
            assert f"`{node.name}`" in docs, f"{node.name} missing from docs/writing-plugins.md"
    assert set(hook_names()) == {n.name for n in tree.body
                                 if isinstance(n, ast.FunctionDef) and n.name.startswith("syncd_")}


