"""Every command, with arguments hypothesis makes up: an answer, never a traceback.

The commands are discovered from the parser (plugins' commands included), so a new command
is covered the day it is added. Each runs in process through :func:`daemon.cli.main`
against this test's database, except those that would keep running when given good
arguments: ``worker``, ``demo`` and ``apply`` get a database that refuses connections, and
``emulate`` (which serves until stopped) is only parsed here; tests/acceptance runs it.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import resource
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.cli import build_parser, main
from daemon.plugins import load_plugins

UNREACHABLE = "postgresql://syncd@127.0.0.1:1/nowhere"
#: Commands that keep running given good arguments: they get a database that refuses.
LONG_RUNNING = {"worker", "demo", "apply", "serve", "run"}
#: Commands that serve until stopped without a database: only parsed.
PARSE_ONLY = {"emulate"}
ERROR_LINE = re.compile(r"^(syncd[\w -]*: error: .+|config is invalid: .+)$")

NASTY = ["-1", "0", "1", "7", "nan", "inf", "-inf", "1e300", "-0", "99999999999999999999",
         "9223372036854775808", "0x10", " 5", "", "x", "square", "product", "NORMAL",
         "5b1f2c3d-0000-4000-8000-000000000001", "not-a-uuid", "{}", "[]", '{"a": 1e999}',
         "\u00e9t\u00e9", "'; DROP TABLE sync_queue; --", "a:b", "--", "%s"]
VALUES = st.one_of(st.sampled_from(NASTY), st.integers().map(str),
                   st.floats().map(str), st.text(max_size=12))
#: Paths stay inside the test's working directory: never "/", "..", or a NUL.
PATHS = st.one_of(st.sampled_from(["out", "missing/dir", ".", "config"]),
                  st.text(st.characters(whitelist_categories=("L", "N")), min_size=1,
                          max_size=8))


def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
            ) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    if parser.get_default("func") is not None:
        yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _leaves(sub, (*path, name))


PARSER = build_parser(load_plugins(None).hook)
COMMANDS = dict(_leaves(PARSER))


def test_every_command_is_discovered() -> None:
    names = {" ".join(path) for path in COMMANDS}
    assert {"validate", "plan", "apply", "dlq list", "dlq show", "dlq purge", "queue",
            "queue prune", "worker", "emulate", "plugin init", "status", "sync", "inbound list",
            "inbound show", "inbound apply", "inbound ignore"} <= names


@contextlib.contextmanager
def _memory_headroom(limit: int = 2 * 1024**3) -> Iterator[None]:
    """At most ``limit`` more address space while the commands run: a command that sizes
    something by an argument (a pool for ``--concurrency 10**8``) fails the test with a
    MemoryError instead of taking the machine's memory."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as f:
        used = int(f.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (used + limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _value(action: argparse.Action) -> st.SearchStrategy[str]:
    if action.choices:
        return st.one_of(st.sampled_from([str(c) for c in action.choices]), VALUES)
    if action.type is Path:
        return PATHS
    return VALUES


def _count(action: argparse.Action) -> st.SearchStrategy[int]:
    nargs = action.nargs
    if nargs is None:
        return st.just(1)
    if nargs == "?":
        return st.integers(0, 1)
    if nargs == "*":
        return st.integers(0, 3)
    if nargs == "+":
        return st.integers(1, 3)
    return st.just(int(nargs))


@st.composite
def _argv(draw: st.DrawFn, parser: argparse.ArgumentParser) -> list[str]:
    argv: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        if action.option_strings:
            if not draw(st.booleans()):
                continue
            argv.append(draw(st.sampled_from(action.option_strings)))
            if action.nargs == 0:
                continue
        for _ in range(draw(_count(action))):
            argv.append(draw(_value(action)))
    return argv


@pytest.mark.parametrize("command", sorted(COMMANDS), ids=" ".join)
def test_every_command_answers_made_up_arguments_without_a_traceback(
        command: tuple[str, ...], db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SYNCD_LOG_FORMAT", "json")
    monkeypatch.setenv("SYNCD_DATA_DIR", str(tmp_path / "pgdata"))
    monkeypatch.setenv("SYNCD_DB_CONNECT_TIMEOUT", "2")
    url = UNREACHABLE if command[0] in LONG_RUNNING else db_url
    monkeypatch.setenv("SYNCD_DATABASE_URL", url)
    parser = COMMANDS[command]

    @settings(max_examples=25, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow])
    @given(args=_argv(parser))
    def check(args: list[str]) -> None:
        argv = ["--log-level", "error", *command, *args]
        capsys.readouterr()
        code: Any = 0
        try:
            if command[0] in PARSE_ONLY:
                PARSER.parse_args(argv)
            else:
                code = main(argv)
        except SystemExit as exc:
            code = exc.code
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err, (argv, out, err)
        assert code in (0, 1, 2), (argv, code, err)
        lines = [line for line in err.split("\n") if line and not line.startswith("{")]
        if code == 1 or (code == 2 and command != ("plan",)):
            # One error line on stderr; or a command's own report on stdout of what it
            # could not do (``dlq replay 7``: "not dead letters: 7").
            assert lines or out.strip(), (argv, code, out, err)
            if lines:
                assert ERROR_LINE.match(lines[-1]), (argv, lines)
                assert len(lines[-1]) < 400, (argv, lines)

    with _memory_headroom():
        check()
