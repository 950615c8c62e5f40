"""``syncd keys generate|rotate|status``: the vault's encryption keys."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from daemon.commands._context import CliContext
from daemon.errors import SyncdError
from daemon.vault.keys import LocalKeyProvider, format_key, generate_key, write_key_file
from daemon.vault.rotate import key_status, rotate

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser(
        "keys", help="generate, rotate and inspect the vault's encryption keys",
        description="Secrets (OAuth tokens, stored API keys) are sealed with AES-256-GCM under "
        "versioned keys from SYNCD_ENCRYPTION_KEYS or SYNCD_ENCRYPTION_KEY_FILES.")
    sub = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    g = sub.add_parser(
        "generate", help="print a new key (the next version) for SYNCD_ENCRYPTION_KEYS",
        description="Print SYNCD_ENCRYPTION_KEYS with a new key first (one version above the "
        "highest configured) followed by the configured ones; with --file, write only the "
        "new key to a new file with mode 0600 and print nothing secret.")
    g.add_argument("--file", type=Path, metavar="PATH",
                   help="write the new key to PATH (mode 0600) instead of printing it")
    g.set_defaults(func=run_generate)
    r = sub.add_parser(
        "rotate", help="re-encrypt every secret with the newest key (online, resumable)",
        description="Reseal every stored secret not sealed with the highest key version, in "
        "batches that each commit; run it again after an interruption. Once `syncd keys "
        "status` shows no value under an old version, that key can be removed.")
    r.add_argument("--batch-size", type=int, default=None, metavar="N",
                   help="secrets per transaction (default: SYNCD_VAULT_ROTATE_BATCH_SIZE)")
    r.set_defaults(func=run_rotate)
    s = sub.add_parser("status", help="how many stored values each key version protects")
    s.set_defaults(func=run_status)


def _configured(ctx: CliContext) -> dict[int, bytes]:
    settings = ctx.settings
    if settings.encryption_keys is None and not settings.encryption_key_files:
        return {}
    return dict(LocalKeyProvider.from_settings(settings, create=False).keys)


def run_generate(args: argparse.Namespace, ctx: CliContext) -> int:
    existing = _configured(ctx)
    version = max(existing, default=0) + 1
    key = generate_key()
    if args.file is not None:
        write_key_file(args.file, [(version, key)])
        print(f"wrote key version {version} to {args.file} (mode 0600); add the file to "
              "SYNCD_ENCRYPTION_KEY_FILES, then run `syncd keys rotate`")
        return 0
    entries = [format_key(version, key)] + [format_key(v, existing[v])
                                            for v in sorted(existing, reverse=True)]
    print("SYNCD_ENCRYPTION_KEYS=" + ",".join(entries))
    print(f"# key version {version}: keep this secret; after deploying it run "
          "`syncd keys rotate`", file=sys.stderr)
    return 0


async def run_rotate(args: argparse.Namespace, ctx: CliContext) -> int:
    batch = args.batch_size or ctx.settings.vault_rotate_batch_size
    if batch < 1:
        raise SyncdError("--batch-size must be at least 1")
    vault = ctx.runtime.vault
    async with ctx.database(migrate=True) as db:
        report = await rotate(db.pool, vault, batch_size=batch)
    print(f"resealed {report.rows} secrets under key version {report.version} "
          f"in {report.batches} batches")
    return 0


async def run_status(args: argparse.Namespace, ctx: CliContext) -> int:
    vault = ctx.runtime.vault
    async with ctx.database(migrate=True) as db:
        counts = await key_status(db.pool)
    current = vault.keys.current_version
    configured = set(vault.keys.versions)
    by_version: dict[int, int] = {}
    for c in counts:
        by_version[c.version] = by_version.get(c.version, 0) + c.values
    print(f"key provider: {vault.keys.name}; current version: {current}")
    for version in sorted(configured | set(by_version)):
        notes = []
        if version == current:
            notes.append("current")
        if version not in configured:
            notes.append("NOT CONFIGURED: these values cannot be read")
        elif version != current and not by_version.get(version):
            notes.append("unused: may be removed")
        elif version != current:
            notes.append("run `syncd keys rotate`")
        detail = ", ".join(f"{c.table} {c.values}" for c in counts if c.version == version)
        print(f"version {version}: {by_version.get(version, 0)} values"
              + (f" ({detail})" if detail else "") + (f"  [{'; '.join(notes)}]" if notes else ""))
    return 0 if set(by_version) <= configured else 1
