"""The ``syncd`` command line.

Sub-commands live in :mod:`daemon.commands`, one module each with a ``register(subparsers)``
function; plugins add theirs through the ``syncd_register_commands`` hook. Every command
returns an exit status: 0 success, 1 error, and for ``plan`` 2 meaning "there are changes".
An operator error (:class:`daemon.errors.SyncdError`) prints one line, never a traceback;
so does an error the database answers a command with (:func:`database_error_line`). Bad
arguments are refused by the parser itself (exit 2), with the types in
:mod:`daemon.commands._argtypes`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import logging
import os
import pkgutil
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import asyncpg

from daemon import __version__
from daemon.errors import SyncdError
from daemon.logs import configure_logging
from daemon.loop import run_async
from daemon.plugins import await_me_maybe

__all__ = ["build_parser", "database_error_line", "main", "one_line"]


def one_line(text: str) -> str:
    """``text`` with line breaks and other control characters escaped: messages that echo
    what the user typed stay one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def database_error_line(exc: Exception) -> str:
    """One line for an error the database (or the driver, on a value it cannot send) gave."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if len(text) > 300:
        text = text[:297] + "..."
    return f"the database refused the request: {one_line(text)}"


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line naming the command and where help is."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def build_parser(plugins_hook: Any | None = None) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="syncd",
        description="Keep venues' Square, Stripe, Mailchimp and QuickBooks in step with "
        "the ticketing platform. Configuration is YAML in git; state is in Postgres.",
    )
    parser.add_argument("--version", action="version", version=f"syncd {__version__}")
    parser.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], default=None,
        help="lowest level of log events (default: SYNCD_LOG_LEVEL or info)",
    )
    parser.add_argument(
        "--log-format", choices=["auto", "json", "console"], default=None,
        help="log format (default: SYNCD_LOG_FORMAT or auto)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    import daemon.commands as commands_pkg

    for info in sorted(pkgutil.iter_modules(commands_pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"daemon.commands.{info.name}")
        module.register(subparsers)
    if plugins_hook is not None:
        plugins_hook.syncd_register_commands(subparsers=subparsers)
    return parser


def _exit_at_once(code: int) -> NoReturn:
    """End the process now that a long-running command has shut down cleanly: skip the
    interpreter's teardown of every loaded module (most of a second on a busy machine),
    which nothing of syncd's needs once its command has closed what it opened."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command ``argv`` names (default: the process's arguments). Long-running
    commands run from the console script (``argv`` None) end the process at once after a
    clean shutdown (see :func:`_exit_at_once`)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    from daemon.commands._context import CliContext

    ctx = CliContext()
    # Logging first (plugins log while loading), from the flags if given, else settings.
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--log-level")
    pre.add_argument("--log-format")
    early, _ = pre.parse_known_args(args_list)
    try:
        settings = ctx.settings
        configure_logging(early.log_level or settings.log_level,
                          early.log_format or settings.log_format)
        parser = build_parser(ctx.plugins.hook)
    except SyncdError as exc:
        print(f"syncd: error: {one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    args = parser.parse_args(args_list)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 0
    try:
        result = func(args, ctx)
        if inspect.isawaitable(result):
            result = run_async(await_me_maybe(result), settings.event_loop)
        code = int(result or 0)
        if argv is None and getattr(args, "exit_at_once", False):
            _exit_at_once(code)
        return code
    except SyncdError as exc:
        print(f"syncd: error: {one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        print(f"syncd: error: {database_error_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
