"""``syncd emulate PROVIDER``: serve a provider's local emulator for people to try.

The emulator is the one the provider plugin ships (``Provider.emulator``), with every
:class:`~daemon.provider.EmulatorSettings` knob on the command line. At start it prints the
URL, the test credentials from the emulator's control API and example ``curl`` lines; it
stops cleanly on SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Mapping
from typing import Any

import httpx

from daemon.commands._argtypes import PORT, PROBABILITY, SECONDS, number, whole_number
from daemon.commands._context import CliContext
from daemon.errors import SyncdError
from daemon.logs import get_logger
from daemon.plugins import UnknownProvider
from daemon.provider import EmulatorSettings

log = get_logger("syncd.emulate")

_DEFAULTS = EmulatorSettings()


_POSITIVE = number(0, 1e9, above_low=True)


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser(
        "emulate",
        help="serve a provider's local emulator",
        description="Serve a local emulator of a provider's API (Square, Stripe, Mailchimp, "
        "QuickBooks or any installed plugin's) on 127.0.0.1, with fault injection. The "
        "control API under /_emulator/ shows the store and the request log.",
    )
    p.add_argument("provider", metavar="PROVIDER", help="provider name, e.g. stripe")
    p.add_argument("--port", type=PORT, default=12111, help="port (default 12111; 0: any)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--latency", type=SECONDS, default=_DEFAULTS.latency,
                   metavar="SECONDS", help="delay before every answer")
    p.add_argument("--error-rate", type=PROBABILITY, default=_DEFAULTS.error_rate, metavar="P",
                   help="share of requests answered with a 5xx")
    p.add_argument("--rate-limit-storm", type=PROBABILITY, default=_DEFAULTS.rate_limit_storm,
                   metavar="P", help="share of requests answered 429 regardless of rate")
    p.add_argument("--timeout-rate", type=PROBABILITY, default=_DEFAULTS.timeout_rate, metavar="P",
                   help="share of requests that hang, then drop the connection")
    p.add_argument("--reset-rate", type=PROBABILITY, default=_DEFAULTS.reset_rate, metavar="P",
                   help="share of requests whose connection is reset before handling")
    p.add_argument("--reset-after-commit-rate", type=PROBABILITY,
                   default=_DEFAULTS.reset_after_commit_rate, metavar="P",
                   help="share of requests applied, then reset before the answer")
    p.add_argument("--hang-seconds", type=SECONDS, default=_DEFAULTS.hang_seconds,
                   metavar="SECONDS", help="how long a --timeout-rate request hangs")
    p.add_argument("--storm-retry-after", type=SECONDS, default=_DEFAULTS.storm_retry_after,
                   metavar="SECONDS", help="Retry-After of a --rate-limit-storm 429")
    p.add_argument("--slow-rate", type=PROBABILITY, default=_DEFAULTS.slow_rate, metavar="P",
                   help="share of requests answered --slow-seconds late")
    p.add_argument("--slow-seconds", type=SECONDS, default=_DEFAULTS.slow_seconds,
                   metavar="SECONDS", help="delay of a slow answer (default 2)")
    p.add_argument("--malformed-rate", type=PROBABILITY, default=_DEFAULTS.malformed_rate,
                   metavar="P", help="share of requests applied, then answered with a "
                   "truncated body")
    p.add_argument("--no-rate-limits", action="store_true",
                   help="do not enforce the provider's documented rate limits")
    p.add_argument("--rate-limit-scale", type=_POSITIVE, default=_DEFAULTS.rate_limit_scale,
                   metavar="X", help="multiply the documented rate limits (default 1)")
    p.add_argument("--seed", type=whole_number(0, 2**64 - 1), default=None,
                   help="seed for the fault dice")
    p.add_argument("--webhook-url", default=None, metavar="URL",
                   help="send signed webhooks here when records change")
    p.add_argument("--webhook-secret", default=_DEFAULTS.webhook_secret, metavar="SECRET",
                   help="secret webhooks are signed with (a test value by default)")
    p.add_argument("--access-token-ttl", type=_POSITIVE, default=None, metavar="SECONDS",
                   help="lifetime of issued access tokens (default: the provider's)")
    p.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace) -> EmulatorSettings:
    return EmulatorSettings(
        latency=args.latency,
        error_rate=args.error_rate,
        rate_limit_storm=args.rate_limit_storm,
        timeout_rate=args.timeout_rate,
        reset_rate=args.reset_rate,
        reset_after_commit_rate=args.reset_after_commit_rate,
        hang_seconds=args.hang_seconds,
        storm_retry_after=args.storm_retry_after,
        slow_rate=args.slow_rate,
        slow_seconds=args.slow_seconds,
        malformed_rate=args.malformed_rate,
        enforce_rate_limits=not args.no_rate_limits,
        rate_limit_scale=args.rate_limit_scale,
        seed=args.seed,
        webhook_url=args.webhook_url,
        webhook_secret=args.webhook_secret,
        access_token_ttl=args.access_token_ttl,
    )


def _auth_flag(credentials: Mapping[str, Any]) -> str:
    token = credentials.get("access_token") or credentials.get("api_key") or ""
    return f"-H 'Authorization: Bearer {token}'"


def examples(provider: str, url: str, credentials: Mapping[str, Any]) -> list[str]:
    """Example curl lines for ``provider`` (known providers get API calls too)."""
    auth = _auth_flag(credentials)
    account: Mapping[str, Any] = credentials.get("account") or {}
    lines: list[str] = []
    if provider == "stripe":
        key = credentials.get("api_key") or credentials.get("access_token") or ""
        lines += [
            f"curl {url}/v1/customers -u {key}: -d email=ada@example.com -d name='Ada Lovelace'",
            f"curl {url}/v1/customers -u {key}:",
        ]
    elif provider == "square":
        lines += [
            f"curl {url}/v2/customers {auth} -H 'Content-Type: application/json' "
            "-d '{\"idempotency_key\": \"demo-1\", \"email_address\": \"ada@example.com\"}'",
            f"curl {url}/v2/customers {auth}",
        ]
    elif provider == "mailchimp":
        list_id = account.get("list_id", "LIST_ID")
        lines += [
            f"curl {url}/3.0/ping {auth}",
            f"curl {url}/3.0/lists/{list_id}/members {auth}",
        ]
    elif provider == "quickbooks":
        realm = account.get("realm_id", "REALM_ID")
        lines += [
            f"curl '{url}/v3/company/{realm}/query?query=select%20*%20from%20Customer"
            f"&minorversion=75' {auth} -H 'Accept: application/json'",
        ]
    lines += [
        f"curl {url}/_emulator/store",
        f"curl {url}/_emulator/requests",
        f"curl -X PATCH {url}/_emulator/settings -d '{{\"error_rate\": 0.2}}'",
    ]
    return lines


async def _credentials(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        response = await client.get("/_emulator/credentials")
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data


async def run(args: argparse.Namespace, ctx: CliContext) -> int:
    from daemon.testing.emulator import EmulatorServer

    try:
        provider = ctx.plugins.provider(args.provider)
    except UnknownProvider as exc:
        raise SyncdError(str(exc)) from None
    settings = settings_from_args(args)
    try:
        app = provider.emulator(settings)
    except NotImplementedError:
        raise SyncdError(f"provider {args.provider!r} ships no emulator") from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        server = EmulatorServer(app, host=args.host, port=args.port)
        try:
            await server.__aenter__()
        except OSError as exc:
            raise SyncdError(
                f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
        try:
            credentials = await _credentials(server.url)
            name = provider.capabilities.display_name
            print(f"{name} emulator listening on {server.url}", flush=True)
            print("test credentials (this emulator only):")
            for key in ("api_key", "access_token"):
                if credentials.get(key):
                    print(f"  {key}: {credentials[key]}")
            for key, value in sorted((credentials.get("account") or {}).items()):
                print(f"  account.{key}: {value}")
            if settings.webhook_url:
                print(f"webhooks go to {settings.webhook_url}")
            print("try:")
            for line in examples(provider.name, server.url, credentials):
                print(f"  {line}")
            print("stop with Ctrl-C", flush=True)
            log.info("emulate.started", provider=provider.name, url=server.url)
            await stop.wait()
        finally:
            await server.__aexit__(None, None, None)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    log.info("emulate.stopped", provider=provider.name)
    print("stopped", flush=True)
    return 0
