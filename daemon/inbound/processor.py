"""Processing inbound changes: each one once, with an outcome and its reason.

:meth:`InboundProcessor.process` takes due changes one at a time, each in a transaction of
its own: the change's row is claimed with ``FOR UPDATE SKIP LOCKED`` (so several workers and
replicas never take the same change) and the changes of one remote record are decided one
at a time (an advisory lock on the record). For each change, in order:

1. the venue's integration with the provider must exist (else *venue_unknown*);
2. a later change of the same record waiting with its values supersedes it, and a change
   older than the newest already processed for the record is *stale*: an older change
   never wins over a newer one;
3. it must concern a synced entity and a linked record (*unmapped*, *unlinked*), not a
   deletion (*deleted*: syncd never deletes platform rows);
4. the inbound mapping of the entity (template plus the integration's overrides) turns
   the provider's values into platform values; fields not on the allow-list are left
   (*not_allowed*), a value a transform or the platform field refuses makes the change a
   dead letter (*invalid_value*), nothing written;
5. per field: a value equal to what syncd last pushed to that provider is its own push
   coming back (*echo*); one equal to the platform's is *unchanged*; otherwise the field's
   policy decides: ``provider_wins`` writes it, ``platform_wins`` refuses it and the record
   is sent to the provider again, ``newest_wins`` compares the change's time with the
   field's time on the platform (ties to the platform);
6. the values go to the sink in the same transaction (when the platform's tables are in
   syncd's database), ``updated_at`` bumped; the provider's baseline takes them, so the
   next push does not send them back to it, while the venue's other providers get them
   as usual.

A failure (the platform unreachable, a sink error) leaves the change ``failed`` to be tried
again with backoff, and a dead letter after ``SYNCD_INBOUND_MAX_ATTEMPTS``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from daemon.errors import SyncdError
from daemon.inbound.fields import (
    CONSENT_FIELDS,
    PLATFORM_FIELDS,
    InboundSettings,
    load_inbound_settings,
)
from daemon.inbound.rules import (
    INBOUND_KEY,
    InboundRule,
    InvalidValue,
    apply_rule,
    normal,
    parse_inbound,
    validate_inbound,
)
from daemon.inbound.sink import PlatformRecord, PlatformRecords, Sink, TableSink
from daemon.inventory import settle_inventory_change
from daemon.logs import get_logger
from daemon.mapping import content_hash, set_path
from daemon.provider import (
    DeliveryStatus,
    Direction,
    Entity,
    InboundWrite,
    Provider,
)
from daemon.queue.types import LeaseLost
from daemon.source import SourceReader, SourceRecord, UnknownVenue
from daemon.sql import queries
from daemon.sync.compiled import compile_mapping
from daemon.sync.mappings import choose_template, resolve_mappings

__all__ = ["Decision", "InboundProcessor", "WriteGuard"]

log = get_logger("syncd.inbound")
_Q = queries("inbound.sql")
#: Called inside every transaction that settles a change (a queue job's lease check).
WriteGuard = Callable[[asyncpg.Connection], Awaitable[None]]
_FAR = datetime(9999, 1, 1, tzinfo=UTC)
_MOVED_TRIES = 3


class _Transient(SyncdError):
    """A failure worth trying again later."""


@dataclass(slots=True)
class Decision:
    """How one change ends: its status, a reason code and sentence, and what was done."""

    status: str
    code: str | None = None
    reason: str | None = None
    outcome: dict[str, Any] = field(default_factory=dict)
    local_id: str | None = None

    @classmethod
    def ignored(cls, code: str, reason: str, **outcome: Any) -> Decision:
        return cls("ignored", code, reason, dict(outcome))


@dataclass(frozen=True, slots=True)
class _Case:
    """One change being decided, with what it concerns."""

    change: asyncpg.Record
    integration: asyncpg.Record
    provider: Provider
    entity: str
    local_id: str
    link: asyncpg.Record | None

    @property
    def venue_id(self) -> str:
        return str(self.change["venue_id"])


def _at(change: Mapping[str, Any]) -> datetime:
    at: datetime = change["occurred_at"] or change["received_at"]
    return at


def _record_key(change: Mapping[str, Any]) -> str:
    return "|".join((str(change["venue_id"]), change["provider"], change["entity_type"],
                     change["remote_id"]))


def _json(value: Any) -> Any:
    if isinstance(value, str):
        return json.loads(value)
    return value


class InboundProcessor:
    """Processes ``inbound_changes`` rows. One processor serves many passes."""

    def __init__(self, pool: asyncpg.Pool, providers: Mapping[str, Provider], *,
                 records: PlatformRecords | None = None, sink: Sink | None = None,
                 source: SourceReader | None = None,
                 settings: InboundSettings | None = None, name: str = "processor") -> None:
        self.pool = pool
        self.providers = providers
        self.records = records or PlatformRecords(pool)
        self.sink: Sink = sink or TableSink(self.records)
        self.source = source or SourceReader(self.records.pool, self.records.settings)
        self.settings = settings or load_inbound_settings()
        self.name = name

    @property
    def _same_database(self) -> bool:
        return self.records.pool is self.pool

    # --- passes ---------------------------------------------------------------------------

    async def process(self, *, venue_id: str | None = None, provider: str | None = None,
                      guard: WriteGuard | None = None, limit: int | None = None,
                      cancelled: Callable[[], bool] | None = None,
                      skip_entities: Sequence[str] = ()) -> Counter[str]:
        """Process due changes (of one venue and/or provider) until none is left, ``limit``
        is reached or ``cancelled()``; the count of each status given. Changes of the
        entity types in ``skip_entities`` stay pending (inventory counts are settled only
        inside their integration's sync job, never beside a push: daemon/inventory.py)."""
        counts: Counter[str] = Counter()
        most = limit if limit is not None else self.settings.batch_size
        skipped: list[int] = []
        while sum(counts.values()) < most and not (cancelled and cancelled()):
            async with self.pool.acquire() as conn, conn.transaction():
                if guard is not None:
                    await guard(conn)
                row = await conn.fetchrow(_Q["claim"], venue_id, provider, skipped,
                                          list(skip_entities))
                if row is None:
                    break
                decision = await self._handle(conn, row, force=False)
                await self._settle(conn, row, decision)
            if decision.status == "failed":
                skipped.append(row["id"])  # not again in this pass
            counts[decision.status] += 1
            if decision.code:
                counts[f"{decision.status}:{decision.code}"] += 1
        if counts:
            log.info("inbound.processed", venue_id=venue_id, provider=provider,
                     **{k.replace(":", "_"): v for k, v in sorted(counts.items())})
        return counts

    async def process_one(self, change_id: int, *, force: bool = False,
                          operator: str = "operator") -> Decision:
        """Process one change now, whatever its status but applied (an operator's
        ``syncd inbound apply``); ``force`` writes the provider's values whatever the
        fields' policies say (the allow-list and value checks still hold)."""
        async with self.pool.acquire() as conn, conn.transaction():
            try:
                row = await conn.fetchrow(_Q["claim_one"], change_id)
            except asyncpg.LockNotAvailableError:
                raise LookupError(f"inbound change {change_id} is being processed now") \
                    from None
            if row is None:
                raise LookupError(f"no inbound change {change_id}")
            if row["status"] == "applied":
                raise LookupError(f"inbound change {change_id} is applied already")
            decision = await self._handle(conn, row, force=force)
            await self._settle(conn, row, decision, decided_by=operator)
        return decision

    async def _handle(self, conn: asyncpg.Connection, row: asyncpg.Record, *, force: bool
                      ) -> Decision:
        try:
            async with conn.transaction():  # a savepoint: a failure writes nothing
                await conn.execute(_Q["record_lock"], _record_key(row))
                return await self._decide(conn, row, force=force)
        except (LeaseLost, asyncpg.InterfaceError, asyncpg.PostgresConnectionError):
            raise
        except InvalidValue as exc:
            return Decision("dead_letter", "invalid_value", str(exc)[:500])
        except Exception as exc:
            attempts = row["attempts"] + 1
            reason = f"{type(exc).__name__}: {exc}"[:500]
            log.warning("inbound.failed", change_id=row["id"], provider=row["provider"],
                        attempts=attempts, error=reason[:200])
            if attempts >= self.settings.max_attempts:
                return Decision("dead_letter", "failed",
                                f"failed {attempts} times; last: {reason}")
            return Decision("failed", "failed", reason)

    async def _settle(self, conn: asyncpg.Connection, row: asyncpg.Record,
                      decision: Decision, *, decided_by: str | None = None) -> None:
        retry = 1 if decision.status in ("failed", "dead_letter") and \
            decision.code == "failed" else 0
        wait = min(self.settings.retry_cap_seconds,
                   self.settings.retry_base_seconds * 2 ** row["attempts"])
        next_at = datetime.now(UTC) + timedelta(seconds=wait) if decision.status == "failed" \
            else row["next_attempt_at"]
        await conn.execute(
            _Q["settle"], row["id"], decision.status, decision.code, decision.reason,
            json.loads(json.dumps(decision.outcome, default=str)), decision.local_id, retry,
            next_at, decided_by or self.name)

    # --- deciding -------------------------------------------------------------------------

    async def _decide(self, conn: asyncpg.Connection, change: asyncpg.Record, *,
                      force: bool) -> Decision:
        venue_id, provider_name = str(change["venue_id"]), change["provider"]
        entity = change["entity_type"]
        integration = await conn.fetchrow(_Q["integration"], venue_id, provider_name)
        if integration is None:
            return Decision.ignored("venue_unknown", f"venue {venue_id} has no "
                                    f"{provider_name} integration")
        provider = self.providers.get(provider_name)
        if provider is None:
            raise _Transient(f"provider {provider_name!r} is not loaded")
        if entity == Entity.INVENTORY.value:
            return await self._settle_inventory(conn, change)
        at = _at(change)
        newer = await conn.fetchval(_Q["newer_change"], venue_id, provider_name, entity,
                                    change["remote_id"], at, change["id"])
        if newer is not None and not force:
            return Decision.ignored("stale", f"superseded by change {newer} of the same "
                                    "record, which is newer")
        state = await conn.fetchrow(_Q["record_state"], venue_id, provider_name, entity,
                                    change["remote_id"])
        if state is not None and state["changed_at"] > at and not force:
            return Decision.ignored(
                "stale", f"out of order: change {state['change_id']} of this record, from "
                f"{state['changed_at'].isoformat()}, is newer and was processed already")
        await conn.execute(_Q["save_record_state"], venue_id, provider_name, entity,
                           change["remote_id"], at, change["id"])
        link = await conn.fetchrow(_Q["link_by_remote"], venue_id, provider_name, entity,
                                   change["remote_id"])
        local_id: str | None = link["local_id"] if link is not None else change["local_id"]
        if change["change"] == "unsubscribed" and local_id is not None:
            await conn.execute(_Q["hold_local"], venue_id, provider_name, entity,
                               change["remote_id"], local_id)
        consent = (" (the consent withdrawal is recorded and held against pushes)"
                   if change["change"] == "unsubscribed" else "")
        if local_id is None:
            return Decision.ignored("unlinked", f"no local {entity} is linked to "
                                    f"{provider_name} record {change['remote_id']}{consent}")
        if change["change"] == "deleted":
            return Decision("ignored", "deleted", f"deleted at {provider_name}; syncd does not "
                            "delete platform records", local_id=local_id)
        rules = await self._rules(conn, integration, provider, entity)
        if not rules:
            return Decision("ignored", "unmapped", f"no inbound mapping for {entity} from "
                            f"{provider_name}{consent}", local_id=local_id)
        fields = _json(change["fields"])
        if fields is None:
            return Decision("ignored", "unmapped", "the change carries no values (a pull "
                            f"brings them){consent}", local_id=local_id)
        case = _Case(change, integration, provider, entity, local_id, link)
        decision = await self._apply(conn, case, rules, fields, force=force)
        decision.local_id = local_id
        return decision

    async def _settle_inventory(self, conn: asyncpg.Connection, change: asyncpg.Record
                                ) -> Decision:
        """An observed inventory count: the register sales it reveals reach the platform's
        ``pos_sales`` once (:func:`daemon.inventory.settle_inventory_change` keeps its own
        order of observations, so the record-order checks of field changes do not apply)."""
        args: dict[str, Any] = {
            "venue_id": str(change["venue_id"]), "provider": change["provider"],
            "local_id": change["local_id"], "remote_id": change["remote_id"],
            "payload": _json(change["payload"]) or {}, "key": change["dedupe_key"],
            "settings": self.records.settings}
        if self._same_database:
            settled = await settle_inventory_change(conn, conn, **args)
        else:
            async with self.records.pool.acquire() as platform:
                settled = await settle_inventory_change(conn, platform, **args)
        if settled.status == "ignored":
            return Decision.ignored(settled.code or "stale", settled.reason)
        return Decision("applied", outcome={"pos_sold": settled.sold,
                                            "pos_total": settled.pos_total})

    async def _rules(self, conn: asyncpg.Connection, integration: Mapping[str, Any],
                     provider: Provider, entity: str) -> dict[str, InboundRule]:
        choice = await choose_template(conn, integration, integration["venue_name"],
                                       provider.default_templates())
        base = parse_inbound((choice.mappings or {}).get(INBOUND_KEY)).get(entity, {})
        overrides = parse_inbound(
            _json(integration["field_mappings"] or {}).get(INBOUND_KEY)).get(entity, {})
        merged: dict[str, InboundRule | None] = {**base, **overrides}
        return {t: r for t, r in merged.items() if r is not None}

    async def _apply(self, conn: asyncpg.Connection, case: _Case,
                     rules: Mapping[str, InboundRule], fields: Mapping[str, Any], *,
                     force: bool) -> Decision:
        change, provider, entity, local_id = case.change, case.provider, case.entity, \
            case.local_id
        venue_id, name = case.venue_id, provider.name
        kind = _entity(entity)
        support = provider.capabilities.entities.get(kind) if kind is not None else None
        problems = {p.target: p for p in validate_inbound(
            entity, rules, support, self.settings.writable, name)}
        specs = PLATFORM_FIELDS.get(entity, {})
        report: dict[str, dict[str, Any]] = {}
        offered: dict[str, Any] = {}
        for target, rule in sorted(rules.items()):
            if target in problems:
                code = "not_allowed" if "allow-list" in problems[target].message \
                    else "unmapped"
                report[target] = {"decision": code, "why": problems[target].message}
                continue
            if rule.source not in fields:
                continue
            value = fields[rule.source]
            spec = specs[target]
            if value is None:
                if spec.required:
                    continue
                offered[target] = None
            else:
                offered[target] = apply_rule(rule, spec, value)
        if not offered:
            codes = {r["decision"] for r in report.values()}
            if codes == {"not_allowed"}:
                return Decision.ignored("not_allowed", "every mapped field is outside the "
                                        "allow-list (SYNCD_INBOUND_WRITABLE)", fields=report)
            return Decision.ignored("unmapped", "the change carries none of the mapped "
                                    "fields", fields=report)
        for _ in range(_MOVED_TRIES):
            lock = self._same_database
            record = await self.records.read(entity, venue_id, local_id,
                                             conn=conn if lock else None, lock=lock)
            if record is None:
                return Decision.ignored("deleted", f"the platform has no {entity} {local_id}")
            if record.deleted:
                return Decision.ignored("deleted", f"{entity} {local_id} is deleted on the "
                                        "platform")
            written, conflicts = await self._weigh(conn, case, rules, offered, record=record,
                                                   report=report, force=force)
            if not written:
                if conflicts:
                    await conn.execute(
                        _Q["link_resend"], venue_id, name, entity, local_id,
                        f"{name} changed {', '.join(conflicts)}; the platform's value wins "
                        "and is sent again")
                    return Decision.ignored(
                        "conflict", f"{', '.join(conflicts)}: the platform's value wins "
                        f"({', '.join(sorted({rules[c].policy for c in conflicts}))})",
                        fields=report)
                decisions = {r["decision"] for f, r in report.items() if f in offered}
                if decisions == {"echo"}:
                    return Decision.ignored("echo", f"the values syncd pushed to {name} "
                                            "came back", fields=report)
                return Decision.ignored("unchanged", "the platform has these values already",
                                        fields=report)
            before = await self._outbound_digest(case)
            write = InboundWrite(venue_id=venue_id, entity_type=entity, local_id=local_id,
                                 values=written, changed_at=_at(change), provider=name,
                                 change_id=change["id"], expected_at=record.updated_at)
            delivery = await self.sink.deliver(write, conn if self._same_database else None)
            if delivery.status is DeliveryStatus.MOVED:
                continue
            if delivery.status is DeliveryStatus.GONE:
                return Decision.ignored("deleted", delivery.detail or "the platform record "
                                        "is gone", fields=report)
            await self._after_write(conn, case, record, written, updated_at=delivery.updated_at,
                                    before=before, conflicts=conflicts)
            applied = ", ".join(sorted(written))
            partial = f"; kept the platform's {', '.join(conflicts)}" if conflicts else ""
            return Decision("applied", None, f"wrote {applied}{partial}", {"fields": report})
        raise _Transient("the platform record kept changing while the change was applied")

    async def _weigh(self, conn: asyncpg.Connection, case: _Case,
                     rules: Mapping[str, InboundRule], offered: Mapping[str, Any], *,
                     record: PlatformRecord, report: dict[str, dict[str, Any]],
                     force: bool) -> tuple[dict[str, Any], list[str]]:
        """Which offered values to write, and which fields are conflicts the platform won."""
        change, entity, local_id, link = case.change, case.entity, case.local_id, case.link
        venue_id = case.venue_id
        base = _json(link["pushed_values"]) if link is not None else None
        at = _at(change)
        writes = {r["field"]: r for r in await conn.fetch(_Q["field_writes"], venue_id,
                                                          entity, local_id)}
        row_write = await conn.fetchrow(_Q["row_write"], venue_id, entity, local_id)
        written: dict[str, Any] = {}
        conflicts: list[str] = []
        for target, value in sorted(offered.items()):
            mine = normal(value)
            current = normal(record.values.get(target))
            entry: dict[str, Any] = {"offered": mine, "platform": current,
                                     "policy": rules[target].policy}
            if isinstance(base, Mapping) and target in base:
                entry["pushed"] = base[target]
            report[target] = entry
            if isinstance(base, Mapping) and target in base and normal(base[target]) == mine:
                entry["decision"] = "echo"
                continue
            if current == mine:
                entry["decision"] = "unchanged"
                continue
            policy = "provider_wins" if force else rules[target].policy
            if policy == "newest_wins":
                platform_at = self._platform_time(target, current, record, writes, row_write)
                entry["platform_changed_at"] = platform_at.isoformat() if platform_at else None
                entry["provider_changed_at"] = at.isoformat()
                wins = platform_at is None or at > platform_at
            else:
                wins = policy == "provider_wins"
            if wins:
                entry["decision"] = "written"
                written[target] = value
            else:
                entry["decision"] = "conflict"
                conflicts.append(target)
        return written, conflicts

    @staticmethod
    def _platform_time(target: str, current: Any, record: PlatformRecord,
                       writes: Mapping[str, asyncpg.Record],
                       row_write: asyncpg.Record | None) -> datetime | None:
        """When the platform's value of ``target`` last changed, as far as syncd can tell:
        the provider's change time when syncd wrote this very value, else the row's change
        time (or, while the row still has syncd's last write, the time before it)."""
        mine = writes.get(target)
        if mine is not None and normal(mine["value"]) == current:
            at: datetime = mine["changed_at"]
            return at
        if row_write is not None and record.updated_at == row_write["written_version"]:
            before: datetime | None = row_write["platform_changed_at"]
            return before
        return record.updated_at

    async def _after_write(self, conn: asyncpg.Connection, case: _Case,
                           record: PlatformRecord, written: Mapping[str, Any], *,
                           updated_at: datetime | None, before: _Digest | None,
                           conflicts: Sequence[str]) -> None:
        change, entity, local_id, link = case.change, case.entity, case.local_id, case.link
        venue_id, name = case.venue_id, case.provider.name
        at = _at(change)
        values = {f: normal(v) for f, v in written.items()}
        await conn.execute(_Q["save_field_writes"], venue_id, entity, local_id,
                           list(values), [json.dumps(v) for v in values.values()], at, name,
                           change["id"])
        if updated_at is not None:
            previous = await conn.fetchrow(_Q["row_write"], venue_id, entity, local_id)
            platform_at = record.updated_at
            if previous is not None and record.updated_at == previous["written_version"]:
                platform_at = previous["platform_changed_at"]
            await conn.execute(_Q["save_row_write"], venue_id, entity, local_id, updated_at,
                               platform_at)
        consent = CONSENT_FIELDS.get(entity)
        if consent in values and isinstance(values[consent], bool):
            await conn.execute(_Q["hold_seen"], venue_id, name, entity, change["remote_id"],
                               values[consent])
        if link is None:
            return
        digest: str | None = None
        if before is not None and not conflicts and before.digest == link["content_hash"] \
                and link["state"] == "synced":
            digest = before.after(written)
        await conn.execute(_Q["link_took_values"], venue_id, name, entity, local_id,
                           values, digest)

    async def _outbound_digest(self, case: _Case) -> _Digest | None:
        """The record's outbound digest for the change's own provider now, and how to get
        the digest after a write: used to tell that provider it holds the new values."""
        integration, provider, local_id = case.integration, case.provider, case.local_id
        kind = _entity(case.entity)
        if kind is None or not provider.capabilities.supports(kind, Direction.PUSH):
            return None
        try:
            venue = await self.source.venue(str(integration["venue_id"]))
        except UnknownVenue:
            return None
        found: SourceRecord | None = None
        async for chunk in self.source.read(kind, venue, since=_FAR, include=[local_id]):
            found = next((r for r in chunk if r.local_id == local_id), found)
        if found is None:
            return None
        async with self.pool.acquire() as conn:
            mappings = await resolve_mappings(conn, integration, provider.capabilities,
                                              provider.default_templates(),
                                              venue_name=venue.name, count_usage=False)
        resolved = mappings.get(kind)
        if resolved is None or not resolved.ok:
            return None
        return _Digest(compile_mapping(resolved.rules), found)


def _entity(name: str) -> Entity | None:
    try:
        return Entity(name)
    except ValueError:
        return None


class _Digest:
    """A record's outbound digest before an inbound write, and after it."""

    def __init__(self, rules: Callable[[Mapping[str, Any]], dict[str, Any]],
                 record: SourceRecord) -> None:
        self.rules = rules
        self.record = record
        self.digest: str | None
        try:
            self.digest = content_hash(rules(record.data))
        except Exception:
            self.digest = None

    def after(self, written: Mapping[str, Any]) -> str | None:
        data = _deep_copy(self.record.data)
        for path, value in written.items():
            set_path(data, path, value)
        customer = data.get("customer")
        if isinstance(customer, dict) and ("customer.first_name" in written
                                           or "customer.last_name" in written):
            name = " ".join(p for p in (customer.get("first_name"), customer.get("last_name"))
                            if p)
            customer["full_name"] = name or None
        try:
            return content_hash(self.rules(data))
        except Exception:
            return None


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value
