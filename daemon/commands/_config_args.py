"""Options and output shared by the config commands (validate, plan, apply)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from daemon.commands._context import CliContext
from daemon.config import ConfigInvalid, YamlLimits
from daemon.credential_scope import CredentialScope

__all__ = ["add_config_dir", "config_dir", "config_limits", "credential_scope",
           "print_problems"]


def add_config_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="DIR", type=Path, default=None,
                        help="config directory with venues/ and templates/ "
                        "(default: SYNCD_CONFIG_DIR or ./config)")


def config_dir(args: argparse.Namespace, ctx: CliContext) -> Path:
    chosen: Path | None = args.config
    return chosen if chosen is not None else ctx.settings.config_dir


def config_limits(ctx: CliContext) -> YamlLimits:
    """The caps on each config file, from the settings."""
    s = ctx.settings
    return YamlLimits(max_file_bytes=s.config_max_file_bytes, max_depth=s.config_max_depth,
                      max_nodes=s.config_max_nodes)


def credential_scope(ctx: CliContext) -> CredentialScope:
    """Where credential references may point, from the settings."""
    return CredentialScope.from_settings(ctx.settings)


def print_problems(exc: ConfigInvalid, *, as_json: bool) -> None:
    """Every problem: JSON on stdout, or one ``file:line:column: ...`` line each on stderr."""
    if as_json:
        print(json.dumps({"valid": False,
                          "problems": [p.as_dict() for p in exc.problems]}, indent=2))
        return
    for problem in exc.problems:
        print(problem, file=sys.stderr)
    count = len(exc.problems)
    print(f"config is invalid: {count} problem{'s' if count != 1 else ''}; nothing applied",
          file=sys.stderr)
