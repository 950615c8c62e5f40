"""The HTTP layer provider clients share: limits, retries, classification, counters.

:class:`ProviderHTTP` wraps an :class:`httpx.AsyncClient` owned by the caller. Each call:

1. waits for the account's :class:`~daemon.ratelimit.RateLimiter` (token, window, concurrency,
   and any pause set after a 429);
2. sends the request with auth headers built from the current :class:`Credentials`;
3. on 429, 5xx or a transport error retries with capped exponential backoff and full jitter;
   a 429 (or a 503 with ``Retry-After``) pauses the whole account for ``Retry-After``
   (seconds or an HTTP date) or the provider's documented default wait;
4. on 401 calls the refresh callback once and retries with the new credentials;
5. classifies what is left into :class:`HTTPError` (a :class:`ProviderError`): 401/403 AUTH,
   429/5xx/transport RETRYABLE, other 4xx PERMANENT.

A ``fault`` hook lets a provider that answers HTTP 200 with an error body (QuickBooks
``Fault``) turn that into an error too. Messages carry the method, the path without its query
string and the provider's own error text; every known secret is masked from them.
"""

from __future__ import annotations

import email.utils
import json
import math
import random
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx

from daemon.logs import MASK, get_logger
from daemon.provider import (
    Credentials,
    Entity,
    ErrorKind,
    OutboundRecord,
    ProviderError,
    RecordResult,
)
from daemon.ratelimit import Clock, RateLimiter
from daemon.retry import RetryPolicy, full_jitter

__all__ = [
    "AuthHeaders",
    "Fault",
    "FaultHook",
    "HTTPError",
    "HTTPProviderClient",
    "ProviderHTTP",
    "RefreshHook",
    "backoff_delay",
    "classify_status",
    "parse_retry_after",
]

log = get_logger("syncd.http")

AuthHeaders = Callable[[Credentials], Mapping[str, str]]
RefreshHook = Callable[[], Awaitable[Credentials | None]]

#: Longest Retry-After a call waits out itself. A longer one gives the call up with the wait,
#: so no worker slot, lease or snapshot is held for minutes: the engine re-queues the job for
#: then (it is the engine's default backoff cap, ``SyncSettings.max_backoff_seconds``).
MAX_RETRY_AFTER = 60.0
_MAX_ERROR_TEXT = 300


@dataclass(frozen=True, slots=True)
class Fault:
    """An error a provider reported in a response body."""

    kind: ErrorKind
    message: str
    code: str | None = None


#: Looks at a 2xx response; returns a Fault when its body says the call failed.
FaultHook = Callable[[httpx.Response], Fault | None]
#: Extracts the provider's error text and code from an error response.
Describe = Callable[[httpx.Response], tuple[str, str | None]]


class HTTPError(ProviderError):
    """A classified failure of one HTTP call, with the provider's parsed error body."""

    def __init__(
        self,
        message: str,
        kind: ErrorKind,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        code: str | None = None,
        body: Any = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message, kind, status=status, retry_after=retry_after,
                         attempts=attempts)
        self.code = code
        self.body = body


def classify_status(status: int) -> ErrorKind:
    """The error kind of an HTTP status that is not a success."""
    if status in (401, 403):
        return ErrorKind.AUTH
    if status in (408, 409, 425, 429) or status >= 500:
        return ErrorKind.RETRYABLE
    return ErrorKind.PERMANENT


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def backoff_delay(
    attempt: int, *, base: float = 0.5, cap: float = 30.0, rng: random.Random | None = None
) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)]."""
    return full_jitter(max(0, attempt) + 1, base=base, cap=cap, rng=rng)


def _default_describe(response: httpx.Response) -> tuple[str, str | None]:
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        text = response.text.strip() if response.content else ""
        return (text[:_MAX_ERROR_TEXT] or response.reason_phrase or "no body"), None
    if isinstance(body, Mapping):
        for key in ("detail", "message", "error_description", "title", "error"):
            val = body.get(key)
            if isinstance(val, str) and val:
                code = body.get("code") or body.get("type")
                return val[:_MAX_ERROR_TEXT], str(code) if code is not None else None
            if isinstance(val, Mapping) and isinstance(val.get("message"), str):
                code = val.get("code") or val.get("type")
                return str(val["message"])[:_MAX_ERROR_TEXT], (
                    str(code) if code is not None else None
                )
    return json.dumps(body)[:_MAX_ERROR_TEXT], None


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError):
        return None


class ProviderHTTP:
    """Rate-limited, retrying, classifying HTTP calls for one provider account."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        provider: str,
        base_url: str,
        credentials: Credentials,
        auth_headers: AuthHeaders,
        limiter: RateLimiter,
        refresh: RefreshHook | None = None,
        default_retry_after: float = 1.0,
        max_attempts: int = 5,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        fault: FaultHook | None = None,
        describe: Describe | None = None,
        default_headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        clock: Clock | None = None,
        wall: Callable[[], datetime] | None = None,
        rng: random.Random | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        """``retry`` (the process's :class:`~daemon.retry.RetryPolicy`, from
        ``ClientContext.retry``) sets the tries and backoff of each call; without one,
        ``max_attempts``, ``backoff_base`` and ``backoff_cap`` do."""
        if retry is not None:
            max_attempts = retry.call_attempts
            backoff_base = retry.call_base_seconds
            backoff_cap = retry.call_cap_seconds
        self.http = http
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.credentials = credentials
        self._auth_headers = auth_headers
        self.limiter = limiter
        self._refresh = refresh
        self.default_retry_after = default_retry_after
        self.max_attempts = max(1, max_attempts)
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._fault = fault
        self._describe = describe or _default_describe
        self._default_headers = dict(default_headers or {})
        self._timeout = timeout
        self.clock: Clock = clock or limiter.clock
        self._wall = wall or (lambda: datetime.now(UTC))
        self._rng = rng or random.Random()
        self.api_calls = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self.retries = 0

    # --- secrets ------------------------------------------------------------------------

    def _secrets(self) -> list[str]:
        c = self.credentials
        return [s for s in (c.access_token, c.api_key) if s and len(s) >= 4]

    def scrub(self, text: str) -> str:
        """``text`` with every known secret of this account masked."""
        for secret in self._secrets():
            text = text.replace(secret, MASK)
        return text

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    # --- the call -------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        content: bytes | None = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        scopes: Collection[str] = (),
        accept: Collection[int] = (),
        retry: bool = True,
    ) -> httpx.Response:
        """Send one logical request; return the response or raise :class:`HTTPError`.

        ``accept`` lists error statuses returned to the caller rather than raised (e.g. 404
        on a lookup). ``scopes`` selects scoped rate windows (e.g. ``{"batch"}``).
        ``retry=False`` makes a single attempt (auth refresh still applies).
        """
        method = method.upper()
        where = f"{method} {httpx.URL(self.url(path)).path}"
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            response: httpx.Response | None = None
            error_delay: float | None = None
            error_text = ""
            last = not retry or attempt >= self.max_attempts
            req_headers = {**self._default_headers, **(headers or {}),
                           **self._auth_headers(self.credentials)}
            request = self.http.build_request(
                method, self.url(path), params=params, json=json_body, content=content,
                data=data, headers=req_headers,
                timeout=self._timeout if self._timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
            async with self.limiter.slot(scopes):
                self.api_calls += 1
                self.bytes_sent += len(request.content) if request.content else 0
                try:
                    response = await self.http.send(request)
                    await response.aread()
                except httpx.TransportError as exc:
                    kind_name = type(exc).__name__
                    if last:
                        raise HTTPError(
                            f"{self.provider}: {where} failed: {kind_name}",
                            ErrorKind.RETRYABLE, attempts=attempt,
                        ) from None
                    error_text = kind_name
            if response is not None:
                self.bytes_received += len(response.content)
                status = response.status_code
                fault = self._fault(response) if (self._fault and status < 300) else None
                if status < 300 and fault is None:
                    return response
                if status in accept:
                    return response
                if fault is not None:
                    kind, text, code = fault.kind, fault.message, fault.code
                else:
                    kind = classify_status(status)
                    text, code = self._describe(response)
                if (status == 401 or (fault is not None and kind is ErrorKind.AUTH)) \
                        and not refreshed and self._refresh is not None:
                    refreshed = True
                    fresh = await self._refresh()
                    if fresh is not None:
                        self.credentials = fresh
                        log.info("http.credentials_refreshed", provider=self.provider)
                        attempt -= 1  # a refresh is not a retry
                        continue
                retry_after = parse_retry_after(response.headers.get("Retry-After"), self._wall())
                if status == 429 and retry_after is None and self.default_retry_after > 0:
                    # The provider's documented wait; 0 means none is documented, so the
                    # request backs off with jitter on its own instead.
                    retry_after = self.default_retry_after
                if kind is not ErrorKind.RETRYABLE or last or (
                    retry_after is not None and retry_after > MAX_RETRY_AFTER
                ):
                    raise HTTPError(
                        self.scrub(f"{self.provider}: {where} -> {status}: {text}"),
                        kind, status=status, retry_after=retry_after, code=code,
                        body=_json_or_none(response), attempts=attempt,
                    )
                error_delay = retry_after
                error_text = str(status)
            self.retries += 1
            if error_delay is not None:
                # Every request of the account waits: the limiter holds them all, in every
                # process when the account's limits are shared.
                await self.limiter.pause(error_delay)
                delay = 0.0
            else:
                delay = backoff_delay(
                    attempt - 1, base=self.backoff_base, cap=self.backoff_cap, rng=self._rng
                )
            log.info("http.retry", provider=self.provider, call=where, error=error_text,
                     attempt=attempt, delay=round(error_delay or delay, 3))
            if delay > 0:
                await self.clock.sleep(delay)

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """:meth:`request` and decode the JSON body (a malformed body is a RETRYABLE error)."""
        response = await self.request(method, path, **kwargs)
        if not response.content:
            return None
        try:
            return response.json()
        except (ValueError, UnicodeDecodeError):
            raise HTTPError(
                f"{self.provider}: {method.upper()} {httpx.URL(self.url(path)).path} "
                f"returned a body that is not JSON",
                ErrorKind.RETRYABLE, status=response.status_code,
            ) from None


class HTTPProviderClient:
    """What every provider client on :class:`ProviderHTTP` shares: the call count, nothing
    of its own to close, and a push that logs one ``<name>.pushed`` event per batch (records,
    failures, calls made). A subclass sets :attr:`name`, builds :attr:`http` and implements
    :meth:`_push`; a batch that fails as a whole raises :class:`ProviderError` from it.
    """

    name: ClassVar[str]
    http: ProviderHTTP

    @property
    def api_calls(self) -> int:
        return self.http.api_calls

    async def aclose(self) -> None:
        """Nothing to release: the HTTP client belongs to the caller."""

    async def push(self, entity: Entity, records: Sequence[OutboundRecord]) -> list[RecordResult]:
        if not records:
            return []
        calls = self.api_calls
        results = await self._push(entity, records)
        get_logger(f"syncd.{self.name}").info(
            f"{self.name}.pushed", entity=entity.value, records=len(records),
            failed=sum(1 for r in results if not r.ok), api_calls=self.api_calls - calls)
        return results

    async def _push(self, entity: Entity, records: Sequence[OutboundRecord]
                    ) -> list[RecordResult]:
        raise NotImplementedError
